"""Drive the EMRsim simulation server with wrk and record the figures.

Measures requests/s and p50/p95/p99 latency (closed loop, ``wrk -t1 -c16`` per instance) of
the hot endpoints (POST a chat message, GET a history page, GET /api/scenarios) on SQLite and
on PostgreSQL, one instance and (PostgreSQL only: SQLite is single-process by design) two
instances on one database; then the latency under an open-model 200 req/s of the chat scenario
(`emrops loadtest run --rate 200/s`, timed from the intended start, so coordinated omission
does not hide queueing). Results go to stdout and, with --write, into the "sim server" section
of docs/benchmarks.md, with the targets of issue #17 (met or missed):

- one SQLite instance: POST message >= 1,000 req/s, GET history >= 1,500, GET /api/scenarios
  >= 2,000; p99 < 100 ms at an open-model 200 req/s;
- PostgreSQL: two instances >= 1.6x one instance on POST message.

Next to req/s, each row gives the server's CPU time per request (process CPU seconds from
/proc/<pid>/stat over the wrk run, divided by the requests answered): on a machine shared with
other work, req/s moves with the load, CPU-ms per request much less.

``--baseline DIR`` also runs the server of another checkout (``DIR/.venv/bin/python -m emrops``
from DIR, e.g. /work/main) and alternates baseline and this tree endpoint by endpoint on the
same database, so both builds see the same load; who goes first alternates too (from endpoint to
endpoint and between instance counts). The table then gives both and their ratio.

Usage: .venv/bin/python benchmarks/sim_server.py [--duration 10] [--connections 16]
       [--open-duration 20] [--engines sqlite,postgresql] [--baseline DIR] [--write]
Needs wrk (Debian package `wrk`; `bash scripts/ensure-debs.sh wrk`) and PostgreSQL
on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMROPS = [sys.executable, "-m", "emrops"]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_ADMIN_INFO = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"

LUA_TEMPLATE = r"""
local ids = {%(ids)s}
local mode = "%(mode)s"
local counter = 0
request = function()
  counter = counter + 1
  local sid = ids[(counter %% #ids) + 1]
  if mode == "post" then
    local body = '{"content": "When did the pain start, and does it spread anywhere?"}'
    return wrk.format("POST", "/api/sessions/" .. sid .. "/messages",
                      {["Content-Type"] = "application/json"}, body)
  elseif mode == "scenarios" then
    return wrk.format("GET", "/api/scenarios")
  else
    return wrk.format("GET", "/api/sessions/" .. sid .. "/messages?after=0&limit=50")
  end
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    '{"requests": %%d, "seconds": %%f, "errors": %%d, ' ..
    '"p50_ms": %%f, "p95_ms": %%f, "p99_ms": %%f}\n',
    summary.requests, summary.duration / 1e6, errors,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Build:
    """Which emrops serves: this tree (label "this") or a baseline checkout."""

    label: str
    python: str
    root: Path


THIS = Build("this", sys.executable, ROOT)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(*args: str) -> str:
    return subprocess.run(
        [*EMROPS, *args], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout


def http_json(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@contextlib.contextmanager
def servers(db_url: str, count: int, build: Build = THIS):
    """``count`` server processes on ``db_url``; yields (urls, pids)."""
    procs, urls = [], []
    try:
        for _ in range(count):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        build.python,
                        "-m",
                        "emrops",
                        "--log-format",
                        "json",
                        "sim",
                        "serve",
                        "--db",
                        db_url,
                        "--port",
                        str(port),
                    ],
                    cwd=build.root,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{url}/health", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"server {url} did not start") from None
                    time.sleep(0.2)
        yield urls, [proc.pid for proc in procs]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def pg_cpu_seconds(dbname: str) -> float:
    """CPU-seconds so far of the PostgreSQL processes working for ``dbname``: its client
    backends plus the shared WAL writer, checkpointer and background writer (other databases'
    live backends on the same server are left out), plus every backend that has exited."""
    import psycopg

    with psycopg.connect(PG_ADMIN_INFO, autocommit=True) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE (datname = %s AND backend_type = "
            "'client backend') OR backend_type = ANY(%s)",
            (dbname, ["walwriter", "checkpointer", "background writer"]),
        ).fetchall()
    total = 0.0
    postmaster = None
    for (pid,) in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):  # gone meanwhile
            total += cpu_seconds(pid)
            postmaster = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    if postmaster is not None:
        # backends that exited (a connection closed) left their CPU in the postmaster's
        # reaped-children time (cutime + cstime): counted too, whichever database they served
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return total


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk(
    urls: list[str],
    pids: list[int],
    mode: str,
    ids: list[str],
    duration: int,
    connections: int,
    pg_db: str | None = None,
) -> dict:
    """Run one wrk per instance in parallel; sum throughput, take the worst percentiles, and
    the CPU time per request answered of the servers, of PostgreSQL (``pg_db``: the database
    they use) and of wrk: on a small machine the three share the cores, and their sum per
    request is what bounds the throughput."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(LUA_TEMPLATE % {"ids": ", ".join(f'"{i}"' for i in ids), "mode": mode})
        per = max(1, connections // len(urls))
        procs = [
            subprocess.Popen(
                [
                    "wrk",
                    "-t",
                    "1",
                    "-c",
                    str(per),
                    "-d",
                    f"{duration}s",
                    "--timeout",
                    "10s",
                    "-s",
                    str(script),
                    url,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for url in urls
        ]
        cpu_before = sum(cpu_seconds(pid) for pid in pids)
        per_before = [cpu_seconds(pid) for pid in pids]
        pg_before = pg_cpu_seconds(pg_db) if pg_db else 0.0
        wrk_before = children_cpu_seconds()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=duration + 60)
            line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
            results.append(json.loads(line))
        per = [cpu_seconds(pid) - before for pid, before in zip(pids, per_before, strict=True)]
        cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
        pg_cpu = pg_cpu_seconds(pg_db) - pg_before if pg_db else None
        wrk_cpu = children_cpu_seconds() - wrk_before
    requests = sum(r["requests"] for r in results)
    seconds = max(r["seconds"] for r in results)
    return {
        "cpu_per_instance_s": [round(c / seconds, 3) for c in per],  # CPU-seconds per second
        "pg_cpu_ms_per_req": 1000 * pg_cpu / requests if requests and pg_cpu is not None else None,
        "wrk_cpu_ms_per_req": 1000 * wrk_cpu / requests if requests else None,
        "cores_busy": (cpu + (pg_cpu or 0.0) + wrk_cpu) / seconds,
        "rps": sum(r["requests"] / r["seconds"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p95_ms": max(r["p95_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "cpu_ms_per_req": 1000 * cpu / requests if requests else None,
        "load": os.getloadavg()[0],
    }


def prepare(base: str) -> list[str]:
    scenario = http_json("GET", f"{base}/api/scenarios")["items"][0]["id"]
    return [
        http_json("POST", f"{base}/api/sessions", {"scenario_id": scenario})["id"]
        for _ in range(50)
    ]


MODES = (("post", "POST message"), ("get", "GET history"), ("scenarios", "GET /api/scenarios"))
TARGETS = {"POST message": 1000, "GET history": 1500, "GET /api/scenarios": 2000}
OPEN_RATE = 200
OPEN_P99_MS = 100.0
SCALE_TARGET = 1.6


def open_model(url: str, duration: int) -> dict:
    """p50/p95/p99 of the chat scenario at an open-model OPEN_RATE req/s (emrops loadtest)."""
    out = run(
        "loadtest", "run", "--url", url, "--scenario", "chat", "--rate", f"{OPEN_RATE}/s",
        "--duration", f"{duration}s", "--warmup", "3s", "--processes", "1", "--json",
    )  # fmt: skip
    doc = json.loads(out)
    summary = doc.get("summary", doc)
    lat = summary.get("latency", {})
    return {
        "rate": OPEN_RATE,
        "p50_ms": lat.get("p50_ms"),
        "p95_ms": lat.get("p95_ms"),
        "p99_ms": lat.get("p99_ms"),
        "errors": summary.get("errors"),
        "unreliable": bool(doc.get("generator", {}).get("unreliable_reasons")),
    }


def bench_engine(
    name: str,
    db_url: str,
    instances: list[int],
    duration: int,
    conns: int,
    open_s: int,
    builds: list[Build],
) -> list[dict]:
    """wrk rows for each instance count and endpoint; with several builds, their servers run
    side by side on the database and take turns endpoint by endpoint."""
    rows = []
    pg_db = db_url.rsplit("/", 1)[1] if name == "postgresql" else None
    # the server expects an initialised database
    run("sim", "init-db", "--db", db_url)
    run("sim", "seed", "--db", db_url, "--sessions", "500", "--messages-per-session", "40")
    with servers(db_url, 1) as (urls, _pids):
        ids = prepare(urls[0])
    for count in instances:
        with contextlib.ExitStack() as stack:
            running = [(b, *stack.enter_context(servers(db_url, count, b))) for b in builds]
            for turn, (mode, label) in enumerate(MODES):
                # who goes first alternates from endpoint to endpoint: the second build of a
                # POST row runs on a database the first one's POSTs have just grown
                order = running if (turn + count) % 2 == 0 else running[::-1]
                for build, urls, pids in order:
                    stats = wrk(urls, pids, mode, ids, duration, conns, pg_db)
                    row = {"engine": name, "instances": count, "endpoint": label, **stats}
                    rows.append({**row, "build": build.label})
                    print(json.dumps(rows[-1]), flush=True)
            if name == "sqlite" and count == 1 and open_s > 0:
                this_urls = next(urls for build, urls, _ in running if build is THIS)
                stats = open_model(this_urls[0], open_s)
                rows.append(
                    {"engine": name, "instances": 1, "endpoint": "open-model", **stats}
                    | {"build": THIS.label}
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows


def comparison(rows: list[dict]) -> list[str]:
    """baseline vs this tree, per row measured with both (empty without --baseline)."""
    base = {
        (r["engine"], r["instances"], r["endpoint"]): r
        for r in rows
        if r["build"] != THIS.label and r["endpoint"] != "open-model"
    }
    if not base:
        return []
    lines = [
        "",
        "This tree against the baseline build, same database, alternating endpoint by endpoint:",
        "",
        "| engine | instances | endpoint | req/s base | req/s this | ratio "
        "| CPU ms/req base | CPU ms/req this | CPU base/this |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = base.get((r["engine"], r["instances"], r["endpoint"]))
        if b is None or r["build"] != THIS.label:
            continue
        cpu_ratio = (
            f"{b['cpu_ms_per_req'] / r['cpu_ms_per_req']:.2f}x"
            if b["cpu_ms_per_req"] and r["cpu_ms_per_req"]
            else "-"
        )
        lines.append(
            f"| {r['engine']} | {r['instances']} | {r['endpoint']} | {b['rps']:.0f} "
            f"| {r['rps']:.0f} | {r['rps'] / b['rps']:.2f}x | {b['cpu_ms_per_req']:.3f} "
            f"| {r['cpu_ms_per_req']:.3f} | {cpu_ratio} |"
        )
    return lines


def markdown(rows: list[dict], duration: int, conns: int) -> str:
    cpu = platform.processor() or platform.machine()
    mine = [r for r in rows if r["build"] == THIS.label]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}; wrk -t1, {conns} connections for {duration}s per "
        "row, server, wrk and PostgreSQL on the same machine "
        "(so absolute numbers are low; compare ratios). Server CPU ms/req: the server "
        "processes' CPU time over the run per request answered (robust to other load); "
        "load: the 1-minute load average at the end of the row.",
        "",
        "PostgreSQL CPU ms/req: its backends for the benchmark database plus the WAL writer, "
        "checkpointer and background writer; wrk CPU ms/req: the load generator's own; cores "
        "busy: the three together, CPU-seconds per second (2 is all this machine has).",
        "",
        "| engine | instances | endpoint | req/s | server CPU ms/req | PostgreSQL CPU ms/req "
        "| wrk CPU ms/req | cores busy | p50 ms | p95 ms | p99 ms | errors | load | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in mine:
        if r["endpoint"] == "open-model":
            continue
        target = (
            TARGETS.get(r["endpoint"]) if (r["engine"], r["instances"]) == ("sqlite", 1) else None
        )
        verdict = f">= {target:,}: {'met' if r['rps'] >= target else 'MISSED'}" if target else ""
        pg_ms = r.get("pg_cpu_ms_per_req")
        lines.append(
            f"| {r['engine']} | {r['instances']} | {r['endpoint']} | {r['rps']:.0f} "
            f"| {r['cpu_ms_per_req']:.3f} | {'' if pg_ms is None else f'{pg_ms:.3f}'} "
            f"| {r['wrk_cpu_ms_per_req']:.3f} | {r['cores_busy']:.2f} "
            f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['errors']} | {r['load']:.1f} | {verdict} |"
        )
    lines += comparison(rows)
    for r in mine:
        if r["endpoint"] == "open-model" and r["p99_ms"] is not None:
            met = r["p99_ms"] < OPEN_P99_MS and not r["unreliable"]
            lines += [
                "",
                f"Open model, chat scenario at {r['rate']} req/s on one SQLite instance "
                f"(`emrops loadtest`): p50/p95/p99 {r['p50_ms']:.1f}/{r['p95_ms']:.1f}/"
                f"{r['p99_ms']:.1f} ms, {r['errors']} errors"
                f"{', generator flagged unreliable' if r['unreliable'] else ''}; target p99 < "
                f"{OPEN_P99_MS:.0f} ms: {'met' if met else 'MISSED'}.",
            ]
    rows_by = {(r["engine"], r["instances"], r["endpoint"]): r for r in mine}
    by = {key: r.get("rps") for key, r in rows_by.items()}
    ratios = []
    for endpoint in ("POST message", "GET history"):
        pg1, pg2 = by.get(("postgresql", 1, endpoint)), by.get(("postgresql", 2, endpoint))
        lite = by.get(("sqlite", 1, endpoint))
        if pg1 and pg2:
            note = ""
            if endpoint == "POST message":
                met = pg2 / pg1 >= SCALE_TARGET
                note = f" (target >= {SCALE_TARGET}x: {'met' if met else 'MISSED'})"
                if not met:
                    note += "; " + cpu_split(rows_by[("postgresql", 1, endpoint)])
                    note += "; " + cpu_split(rows_by[("postgresql", 2, endpoint)])
            ratios.append(f"- {endpoint}: two PostgreSQL instances / one = {pg2 / pg1:.2f}x{note}")
        if pg1 and lite:
            ratios.append(f"- {endpoint}: PostgreSQL one instance / SQLite = {pg1 / lite:.2f}x")
    return "\n".join(lines + [""] + ratios) + "\n"


def cpu_split(row: dict) -> str:
    """Where one row's CPU went, per second: each server process, PostgreSQL, wrk."""
    rps = row["rps"]
    instances = ", ".join(f"{c:.2f}" for c in row.get("cpu_per_instance_s", []))
    pg = (row.get("pg_cpu_ms_per_req") or 0.0) * rps / 1000
    load = (row.get("wrk_cpu_ms_per_req") or 0.0) * rps / 1000
    return (
        f"{row['instances']} instance(s) at {rps:.0f} req/s used {row['cores_busy']:.2f} cores: "
        f"server process(es) {instances}, PostgreSQL {pg:.2f}, wrk {load:.2f}"
    )


def write_section(key: str, title: str, text: str) -> None:
    """Replace (or append) the ``<!-- key:begin -->`` section of docs/benchmarks.md.

    Shared by the benchmark scripts: each owns one marked section of that file.
    """
    doc = ROOT / "docs" / "benchmarks.md"
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    current = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}{end}"
    if begin in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + f"\n\n## {title}\n\n" + block + "\n"
    doc.write_text(current)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--open-duration", type=int, default=20, help="open-model run seconds (0: skip)"
    )
    parser.add_argument(
        "--engines", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (with its .venv) to run side by side, e.g. /work/main",
    )
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: install it with `bash scripts/ensure-debs.sh wrk`")
    engines = {e.strip() for e in args.engines.split(",") if e.strip()}
    if not engines or engines - {"sqlite", "postgresql"}:
        sys.exit(f"--engines: choose from sqlite, postgresql (got {args.engines!r})")
    builds = [THIS]
    if args.baseline is not None:
        python = args.baseline / ".venv" / "bin" / "python"
        if not python.exists():
            sys.exit(f"--baseline: {python} not found (the checkout needs its .venv)")
        builds.insert(0, Build("baseline", str(python), args.baseline.resolve()))
    rows: list[dict] = []
    if "sqlite" in engines:
        with tempfile.TemporaryDirectory() as tmp:
            rows += bench_engine(
                "sqlite",
                f"sqlite:///{tmp}/bench.db",
                [1],
                args.duration,
                args.connections,
                args.open_duration,
                builds,
            )
    if "postgresql" in engines:
        rows += bench_postgresql(args, builds)
    text = markdown(rows, args.duration, args.connections)
    print(text)
    if args.write:
        write_section("sim_server", "Simulation server (benchmarks/sim_server.py)", text)


def bench_postgresql(args: argparse.Namespace, builds: list[Build]) -> list[dict]:
    import psycopg

    name = f"emrops_bench_{uuid.uuid4().hex[:8]}"
    admin = PG_ADMIN_INFO
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        pg_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        return bench_engine(
            "postgresql", pg_url, [1, 2], args.duration, args.connections, 0, builds
        )
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
