"""Drive the EMRsim simulation server with wrk and record the figures.

Measures requests/s and p50/p95/p99 latency of the two hot endpoints
(POST a chat message, GET a history page) on SQLite and on PostgreSQL, one
instance and (PostgreSQL only: SQLite is single-process by design) two
instances on one database. Results go to stdout and, with --write, into the
"sim server" section of docs/benchmarks.md.

Usage: .venv/bin/python benchmarks/sim_server.py [--duration 10] [--connections 16] [--write]
Needs wrk (Debian package `wrk`; `bash scripts/ensure-debs.sh wrk`) and PostgreSQL
on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EMROPS = [sys.executable, "-m", "emrops"]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

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
def servers(db_url: str, count: int):
    procs, urls = [], []
    try:
        for _ in range(count):
            port = free_port()
            procs.append(
                subprocess.Popen(
                    [
                        *EMROPS,
                        "--log-format",
                        "json",
                        "sim",
                        "serve",
                        "--db",
                        db_url,
                        "--port",
                        str(port),
                    ],
                    cwd=ROOT,
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
        yield urls
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wrk(urls: list[str], mode: str, ids: list[str], duration: int, connections: int) -> dict:
    """Run one wrk per instance in parallel; sum throughput, take the worst percentiles."""
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
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=duration + 60)
            line = [ln for ln in out.splitlines() if ln.startswith("{")][-1]
            results.append(json.loads(line))
    return {
        "rps": sum(r["requests"] / r["seconds"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p95_ms": max(r["p95_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
    }


def prepare(base: str) -> list[str]:
    scenario = http_json("GET", f"{base}/api/scenarios")["items"][0]["id"]
    return [
        http_json("POST", f"{base}/api/sessions", {"scenario_id": scenario})["id"]
        for _ in range(50)
    ]


def bench_engine(
    name: str, db_url: str, instances: list[int], duration: int, conns: int
) -> list[dict]:
    rows = []
    # the server expects an initialised database
    run("sim", "init-db", "--db", db_url)
    run("sim", "seed", "--db", db_url, "--sessions", "500", "--messages-per-session", "40")
    with servers(db_url, 1) as urls:
        ids = prepare(urls[0])
    for count in instances:
        with servers(db_url, count) as urls:
            for mode, label in (("post", "POST message"), ("get", "GET history")):
                stats = wrk(urls, mode, ids, duration, conns)
                rows.append({"engine": name, "instances": count, "endpoint": label, **stats})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def markdown(rows: list[dict], duration: int, conns: int) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}; wrk {conns} connections for {duration}s per row, "
        "server, wrk and PostgreSQL on the same machine "
        "(so absolute numbers are low; compare ratios).",
        "",
        "| engine | instances | endpoint | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['engine']} | {r['instances']} | {r['endpoint']} | {r['rps']:.0f} "
            f"| {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} |"
        )
    by = {(r["engine"], r["instances"], r["endpoint"]): r["rps"] for r in rows}
    ratios = []
    for endpoint in ("POST message", "GET history"):
        pg1, pg2 = by.get(("postgresql", 1, endpoint)), by.get(("postgresql", 2, endpoint))
        lite = by.get(("sqlite", 1, endpoint))
        if pg1 and pg2:
            ratios.append(f"- {endpoint}: two PostgreSQL instances / one = {pg2 / pg1:.2f}x")
        if pg1 and lite:
            ratios.append(f"- {endpoint}: PostgreSQL one instance / SQLite = {pg1 / lite:.2f}x")
    return "\n".join(lines + [""] + ratios) + "\n"


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
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk not found: install it with `bash scripts/ensure-debs.sh wrk`")
    import psycopg

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        rows += bench_engine(
            "sqlite", f"sqlite:///{tmp}/bench.db", [1], args.duration, args.connections
        )
    name = f"emrops_bench_{uuid.uuid4().hex[:8]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        pg_url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
        rows += bench_engine("postgresql", pg_url, [1, 2], args.duration, args.connections)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    text = markdown(rows, args.duration, args.connections)
    print(text)
    if args.write:
        write_section("sim_server", "Simulation server (benchmarks/sim_server.py)", text)


if __name__ == "__main__":
    main()
