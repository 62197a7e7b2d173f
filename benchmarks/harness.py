"""The benchmark harness's own overhead: ``emrops benchmark run --workload point-select`` versus
``pgbench -S`` in the same run, and the client/server CPU split of a 16-client chat cell.

1. pgbench's built-in select-only script: ``pgbench -S -M MODE -n -c N -j N -T D`` on
   ``pgbench_accounts`` of a scratch database initialised with ``pgbench -i -s SCALE`` (scale 1:
   100,000 accounts). MODE is pgbench's query mode (``--pgbench-mode``): ``simple`` (its
   default, the reference of issue #17) or ``prepared`` (server-side prepared statements, as
   psycopg uses after a statement's fifth run); ``-j N``: one pgbench thread per client.
2. emrops' point-select calibration workload through ``run_benchmark`` (the data layer's lean
   path, client processes ``--processes``): one message read by primary key per operation, on
   a seeded EMRsim scratch database of the same server. Both are one indexed primary-key read
   per transaction; the ratio is emrops ops/s over pgbench TPS.
3. ``chat`` at 16 clients on PostgreSQL: the CPU-seconds of PostgreSQL's processes (read from
   /proc: the postmaster, its live children and the children it reaped) against the client
   processes' CPU-seconds, per second of the cell. Needs PostgreSQL on this machine.

Targets (issue #17): >= 0.8x pgbench at 1 and at 4 clients; at 16 clients on chat the server
uses more CPU than the clients. On a machine with fewer cores than clients + server, a missed
scaling target is reported with the CPU split that bounds it.

Usage:
    .venv/bin/python benchmarks/harness.py [--server postgresql+psycopg://postgres@127.0.0.1/postgres]
        [--clients 1,4] [--duration 10] [--scale 1] [--processes auto] [--write]

Prints Markdown (with --write also into the "harness" section of docs/benchmarks.md) and exits
3 when a target is missed. Scratch databases are dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sim_server import write_section  # the script's folder is on sys.path

from emrops.bench.api import BenchOptions, run_benchmark
from emrops.db.engine import parse_db_url
from emrops.stats.saturation import usable_cores

TARGET = 0.8
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def _libpq(url: sa.URL) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PGHOST": url.host or "127.0.0.1",
            "PGPORT": str(url.port or 5432),
            "PGUSER": url.username or "postgres",
        }
    )
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    return env


def pgbench_tps(url: sa.URL, db: str, clients: int, seconds: int, mode: str) -> float:
    out = subprocess.run(
        ["pgbench", "-S", "-M", mode, "-n", "-c", str(clients), "-j", str(clients),
         "-T", str(seconds), db],
        env=_libpq(url), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    match = _TPS.search(out)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{out}")
    return float(match.group(1))


def _ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _proc_cpu(pid: int, children_too: bool = False) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[11..14] = utime, stime, cutime, cstime (stat fields 14-17)
    used = int(fields[11]) + int(fields[12])
    if children_too:
        used += int(fields[13]) + int(fields[14])
    return used / _ticks()


def postgres_cpu_seconds(admin_info: str) -> float:
    """CPU-seconds used so far by the local PostgreSQL: postmaster + live children + reaped."""
    with psycopg.connect(admin_info, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    postmaster = int(Path(row[0], "postmaster.pid").read_text().split()[0])
    total = _proc_cpu(postmaster, children_too=True)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                total += _proc_cpu(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
    return total


def emrops_cells(server: str, workload: str, clients: list[int], args: Any) -> dict[str, Any]:
    return run_benchmark(
        BenchOptions(
            dbs=[server],
            workload=workload,
            clients=clients,
            duration_s=float(args.duration),
            warmup_s=1.0,
            repeat=1,
            sessions=args.sessions,
            messages_per_session=50,
            processes=args.processes,
        )
    )


def cpu_split(server: str, admin_info: str, args: Any) -> dict[str, Any]:
    """chat at 16 clients: PostgreSQL's CPU-seconds per second against the clients'."""
    marks: dict[str, float] = {}

    def progress(message: str) -> None:
        if "client(s)" in message and "pg0" not in marks:
            marks["pg0"], marks["t0"] = postgres_cpu_seconds(admin_info), time.monotonic()

    doc = run_benchmark(
        BenchOptions(
            dbs=[server], workload="chat", clients=[16], duration_s=float(args.duration),
            warmup_s=1.0, repeat=1, sessions=args.sessions, processes=args.processes,
        ),
        progress=progress,
    )  # fmt: skip
    pg_s = postgres_cpu_seconds(admin_info) - marks["pg0"]
    wall = time.monotonic() - marks["t0"]  # warm-up + cell (+ its fresh copy): see the note
    rep = doc["cells"][0]["repeats"][0]
    client_per_s = sum(rep["client_cpu_s"]) / rep["duration_s"]
    return {
        "ops_per_s": rep["ops_per_s"],
        "server_cpu_per_s": pg_s / wall if wall > 0 else 0.0,
        "client_cpu_per_s": client_per_s,
        "client_cpu_s": rep["client_cpu_s"],
        "client_bound": rep["client_bound"],
        "processes": rep["processes"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--processes", default="auto", help="client processes: N or auto")
    parser.add_argument("--pgbench-mode", default="simple", choices=("simple", "prepared"))
    parser.add_argument("--no-split", action="store_true", help="skip the 16-client CPU split")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
    args.processes = None if args.processes == "auto" else int(args.processes)
    clients = [int(c) for c in args.clients.split(",")]
    server = parse_db_url(args.server)
    name = f"emrops_harness_{uuid.uuid4().hex[:10]}"
    admin_info = server.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_info, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(args.scale), name],
            env=_libpq(server.url), capture_output=True, check=True,
        )  # fmt: skip
        theirs = {
            n: pgbench_tps(server.url, name, n, args.duration, args.pgbench_mode) for n in clients
        }
    finally:
        with psycopg.connect(admin_info, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    ours = emrops_cells(str(server), "point-select", clients, args)
    split = None if args.no_split else cpu_split(str(server), admin_info, args)
    text, ok = markdown(args, theirs, ours, split)
    print(text)
    if args.write:
        write_section("harness", "benchmark harness vs pgbench (benchmarks/harness.py)", text)
    return 0 if ok else 3


def markdown(
    args: Any, theirs: dict[int, float], ours: dict[str, Any], split: dict[str, Any] | None
) -> tuple[str, bool]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    procs = ours["config"]["processes"]
    lines = [
        f"Machine: {platform.machine()}, {usable_cores()} cores, Python "
        f"{platform.python_version()}; {now}; {args.duration}s per cell, load average at the "
        f"end {os.getloadavg()[0]:.2f}. pgbench: `pgbench -S -M {args.pgbench_mode} -c N -j N` on "
        f"pgbench_accounts, scale {args.scale} ({100_000 * args.scale:,} rows). emrops: "
        f"`benchmark run --workload point-select --processes {procs}` (messages by primary "
        f"key, {args.sessions * 50:,} rows).",
        "",
        "| clients | pgbench -S TPS | emrops ops/s | ratio | target | client CPU share | "
        "client_bound |",
        "|---|---|---|---|---|---|---|",
    ]
    ok = True
    for cell in ours["cells"]:
        n = cell["clients"]
        rep = cell["repeats"][0]
        ratio = rep["ops_per_s"] / theirs[n] if theirs[n] else 0.0
        met = ratio >= TARGET
        ok &= met
        lines.append(
            f"| {n} | {theirs[n]:,.0f} | {rep['ops_per_s']:,.0f} | {ratio:.2f}x | "
            f">= {TARGET}x {'met' if met else 'MISSED'} | {rep['cpu_share']:.0%} | "
            f"{'yes' if rep['client_bound'] else 'no'} |"
        )
    if split is not None:
        server_ahead = split["server_cpu_per_s"] > split["client_cpu_per_s"]
        ok &= server_ahead
        per_proc = ", ".join(f"{c:.2f}" for c in split["client_cpu_s"])
        lines += [
            "",
            f"chat, 16 clients, PostgreSQL, {split['processes']} client process(es): "
            f"{split['ops_per_s']:,.0f} ops/s; PostgreSQL used "
            f"{split['server_cpu_per_s']:.2f} CPU-seconds per second, the clients "
            f"{split['client_cpu_per_s']:.2f} (per process over the cell: {per_proc} s); "
            f"client_bound: {'yes' if split['client_bound'] else 'no'}. Target (server busier "
            f"than the clients): {'met' if server_ahead else 'MISSED'}. (The server figure "
            "spans the warm-up too, the client figure the measured window only.)",
        ]
    return "\n".join(lines) + "\n", ok


if __name__ == "__main__":
    sys.exit(main())
