"""The benchmark harness's own overhead: ``emrops benchmark run --workload point-select`` versus
``pgbench -S`` in the same run, and the client/server CPU split of a 16-client chat cell.

1. pgbench's built-in select-only script: ``pgbench -S -M MODE -n -c N -j N -T D`` on
   ``pgbench_accounts`` of a scratch database initialised with ``pgbench -i -s SCALE`` (scale 1:
   100,000 accounts). MODE is pgbench's query mode (``--pgbench-mode``): ``simple`` (its
   default, the reference of issue #17) or ``prepared`` (server-side prepared statements, as
   psycopg uses after a statement's fifth run); ``-j N``: one pgbench thread per client.
2. emrops' point-select calibration workload through ``run_benchmark``: one message read by
   primary key per operation (``queries.get_message``, the data layer's own SQL), on a seeded
   EMRsim scratch database of the same server. Both are one indexed primary-key read per
   transaction; the ratio is emrops ops/s over pgbench TPS.
   Like for like: pgbench ``-j N`` runs each client in its own thread, free of any lock, with
   its own connection for the whole run. emrops' clients are Python, where threads share one
   interpreter lock, so the calibration gives each client its own process (``--processes
   clients``, the default here: processes = clients) holding one connection for the cell.
   ``--processes auto`` (one per core, ``benchmark run``'s default) or N can be given instead.
3. ``chat`` at 16 clients on PostgreSQL: the CPU-seconds of PostgreSQL's processes against the
   client processes' CPU-seconds, per second, over the same window (the cell's measured window,
   warm-up excluded, for both). Client processes as ``benchmark run`` has them by default (one
   per core; ``--chat-processes N`` to compare: on a 2-core machine shared with the server,
   more client processes cost more CPU per operation in context switches, not less).

PostgreSQL's CPU is read from /proc for the backends serving the measured database (found in
pg_stat_activity) plus the shared WAL writer, checkpointer and background writer, sampled every
0.1 s and interpolated at the window's ends, so other databases on the same server (other users
of a shared machine) do not count; the client CPU is the
client processes' own (emrops) or pgbench's (as a child of this script). Both are also given per
operation, which is what bounds a cell on a small machine: with C cores, at most
C / (client + server CPU per operation) operations per second are possible, whatever the
harness does. Where a target is missed the table says which side bounds it.

Targets (issue #17): >= 0.8x pgbench at 1 and at 4 clients; at 16 clients on chat the server
uses more CPU than the clients.

Usage:
    .venv/bin/python benchmarks/harness.py [--server postgresql+psycopg://postgres@127.0.0.1/postgres]
        [--clients 1,4] [--duration 10] [--scale 1] [--processes clients|auto|N]
        [--chat-processes auto|N] [--pgbench-mode simple|prepared] [--no-split] [--write]

Prints Markdown (with --write also into the "harness" section of docs/benchmarks.md) and exits
3 when a target is missed. Scratch databases are dropped afterwards. Needs PostgreSQL on this
machine (its processes are read from /proc).
"""

from __future__ import annotations

import argparse
import bisect
import datetime as dt
import os
import platform
import re
import resource
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
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
SAMPLE_S = 0.1
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


def _ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _ticks()  # utime + stime (stat fields 14, 15)


# PostgreSQL's own background processes that work for every database (WAL, checkpoints)
_SHARED = ("walwriter", "checkpointer", "background writer")


class ServerCpu:
    """The CPU-seconds of the PostgreSQL processes serving the measured databases (client
    backends of databases named like ``pattern``) plus the shared background writers, sampled
    every SAMPLE_S in a thread; ``between(t0, t1)`` gives the CPU-seconds used between two
    wall-clock (Unix) times, interpolated. Other databases' backends on the same server (other
    users of a shared machine) are left out. A backend that exits keeps the CPU last read."""

    def __init__(self, admin_info: str, pattern: str) -> None:
        self.admin_info = admin_info
        self.pattern = pattern
        self.seen: dict[int, float] = {}
        self.times: list[float] = []
        self.cpu: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._conn: psycopg.Connection[Any] | None = None

    def _sample(self) -> None:
        assert self._conn is not None
        pids = self._conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE (datname LIKE %s AND backend_type = "
            "'client backend') OR backend_type = ANY(%s)",
            (self.pattern, list(_SHARED)),
        ).fetchall()
        for (pid,) in pids:
            try:
                self.seen[pid] = _proc_cpu(pid)
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile: keeps the CPU last read
        self.cpu.append(sum(self.seen.values()))
        self.times.append(time.time())

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def __enter__(self) -> ServerCpu:
        self._conn = psycopg.connect(self.admin_info, autocommit=True)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        assert self._conn is not None
        self._conn.close()

    def at(self, when: float) -> float:
        i = bisect.bisect_left(self.times, when)
        if i <= 0:
            return self.cpu[0]
        if i >= len(self.times):
            return self.cpu[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        c0, c1 = self.cpu[i - 1], self.cpu[i]
        return c0 + (c1 - c0) * ((when - t0) / (t1 - t0) if t1 > t0 else 0.0)

    def between(self, start: float, end: float) -> float:
        return self.at(end) - self.at(start)


@dataclass(frozen=True)
class Split:
    """One cell's throughput and CPU use, per second of its measured window."""

    ops_per_s: float
    client_cpu_per_s: float
    server_cpu_per_s: float

    def per_op_us(self, cpu_per_s: float) -> float:
        return 1e6 * cpu_per_s / self.ops_per_s if self.ops_per_s else 0.0

    @property
    def client_us(self) -> float:
        return self.per_op_us(self.client_cpu_per_s)

    @property
    def server_us(self) -> float:
        return self.per_op_us(self.server_cpu_per_s)

    def ceiling(self, cores: int) -> float:
        """The most operations per second ``cores`` cores allow at this CPU per operation."""
        per_op = self.client_us + self.server_us
        return 1e6 * cores / per_op if per_op else 0.0


def pgbench_cell(
    url: sa.URL, db: str, clients: int, seconds: int, mode: str, server: ServerCpu
) -> Split:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.time()
    out = subprocess.run(
        ["pgbench", "-S", "-M", mode, "-n", "-c", str(clients), "-j", str(clients),
         "-T", str(seconds), db],
        env=_libpq(url), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    match = _TPS.search(out)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{out}")
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = end - start  # -T seconds plus connecting: the CPU figures are per second of it
    return Split(float(match.group(1)), client / wall, server.between(start, end) / wall)


def _emrops_split(rep: dict[str, Any], server: ServerCpu) -> Split:
    start, end = rep["window_unix"]
    wall = end - start
    return Split(
        rep["ops_per_s"], sum(rep["client_cpu_s"]) / wall, server.between(start, end) / wall
    )


def _bench(server: str, workload: str, clients: list[int], processes: int | None,
           args: Any) -> dict[str, Any]:  # fmt: skip
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
            processes=processes,
        )
    )


def _processes(args: Any, clients: list[int]) -> int | None:
    if args.processes == "clients":
        return max(clients)  # split_clients uses min(processes, clients): one per client
    return None if args.processes == "auto" else int(args.processes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument(
        "--processes", default="clients", help="client processes: clients (one each), auto or N"
    )
    parser.add_argument(
        "--chat-processes", default="auto", help="client processes of the chat cell: auto or N"
    )
    parser.add_argument("--pgbench-mode", default="simple", choices=("simple", "prepared"))
    parser.add_argument("--no-split", action="store_true", help="skip the 16-client chat cell")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args(argv)
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
        with ServerCpu(admin_info, name) as cpu:
            theirs = {
                n: pgbench_cell(server.url, name, n, args.duration, args.pgbench_mode, cpu)
                for n in clients
            }
    finally:
        with psycopg.connect(admin_info, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    with ServerCpu(admin_info, "emrops_bench_%") as cpu:
        doc = _bench(str(server), "point-select", clients, _processes(args, clients), args)
    ours = {
        cell["clients"]: (_emrops_split(cell["repeats"][0], cpu), cell["repeats"][0])
        for cell in doc["cells"]
    }
    chat = None
    if not args.no_split:
        with ServerCpu(admin_info, "emrops_bench_%") as cpu:
            chat_procs = None if args.chat_processes == "auto" else int(args.chat_processes)
            chat_doc = _bench(str(server), "chat", [16], chat_procs, args)
        rep = chat_doc["cells"][0]["repeats"][0]
        chat = (_emrops_split(rep, cpu), rep)
    text, ok = markdown(args, doc["config"]["processes"], theirs, ours, chat)
    print(text)
    if args.write:
        write_section("harness", "benchmark harness vs pgbench (benchmarks/harness.py)", text)
    return 0 if ok else 3


def _bound(split: Split, cores: int) -> str:
    """Which side spends more CPU per operation, and the throughput the cores allow."""
    side = "clients" if split.client_us >= split.server_us else "server"
    return f"{side}; CPU ceiling {split.ceiling(cores):,.0f}/s"


def markdown(
    args: Any,
    processes: int,
    theirs: dict[int, Split],
    ours: dict[int, tuple[Split, dict[str, Any]]],
    chat: tuple[Split, dict[str, Any]] | None,
) -> tuple[str, bool]:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cores = usable_cores()
    how = (
        "one process per client (like pgbench's -j N: a thread per client)"
        if args.processes == "clients"
        else f"--processes {processes}"
    )
    lines = [
        f"Machine: {platform.machine()}, {cores} cores, Python "
        f"{platform.python_version()}; {now}; {args.duration}s per cell, load average at the "
        f"end {os.getloadavg()[0]:.2f}. pgbench: `pgbench -S -M {args.pgbench_mode} -c N -j N` on "
        f"pgbench_accounts, scale {args.scale} ({100_000 * args.scale:,} rows). emrops: "
        f"`benchmark run --workload point-select`, {how}, each client holding one connection "
        f"(messages by primary key, {args.sessions * 50:,} rows).",
        "",
        "CPU per operation is client / server µs (CPU-seconds per second of the measured window "
        f"over operations per second); the ceiling is what {cores} cores allow at that cost.",
        "",
        "| clients | pgbench -S TPS | emrops ops/s | ratio | target | pgbench CPU µs/op "
        "client / server | emrops CPU µs/op client / server | larger CPU side (emrops) | "
        "client CPU share | client_bound |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    ok = True
    for n, (mine, rep) in sorted(ours.items()):
        ref = theirs[n]
        ratio = mine.ops_per_s / ref.ops_per_s if ref.ops_per_s else 0.0
        met = ratio >= TARGET
        ok &= met
        lines.append(
            f"| {n} | {ref.ops_per_s:,.0f} | {mine.ops_per_s:,.0f} | {ratio:.2f}x | "
            f">= {TARGET}x {'met' if met else 'MISSED'} | {ref.client_us:.0f} / "
            f"{ref.server_us:.0f} | {mine.client_us:.0f} / {mine.server_us:.0f} | "
            f"{_bound(mine, cores)} | {rep['cpu_share']:.0%} | "
            f"{'yes' if rep['client_bound'] else 'no'} |"
        )
    if chat is not None:
        split, rep = chat
        server_ahead = split.server_cpu_per_s > split.client_cpu_per_s
        ok &= server_ahead
        per_proc = ", ".join(f"{c:.2f}" for c in rep["client_cpu_s"])
        lines += [
            "",
            f"chat, 16 clients, PostgreSQL, {rep['processes']} client process(es): "
            f"{split.ops_per_s:,.0f} ops/s; over the measured window PostgreSQL used "
            f"{split.server_cpu_per_s:.2f} CPU-seconds per second, the clients "
            f"{split.client_cpu_per_s:.2f} (per process: {per_proc} s); per operation "
            f"{split.server_us:.0f} µs server, {split.client_us:.0f} µs clients; client_bound: "
            f"{'yes' if rep['client_bound'] else 'no'}. Target (server busier than the "
            f"clients): {'met' if server_ahead else 'MISSED'}. At this CPU per operation "
            f"{usable_cores()} cores allow at most {split.ceiling(usable_cores()):,.0f} ops/s; "
            f"the clients' share of it is "
            f"{split.client_us / (split.client_us + split.server_us or 1):.0%}.",
        ]
    return "\n".join(lines) + "\n", ok


if __name__ == "__main__":
    sys.exit(main())
