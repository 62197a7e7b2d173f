"""The load generator against Locust and wrk on nginx, and the sim server's chat figures.

Part 1, the generator: nginx (Debian package) serves a small static file pinned to CPU 1 with
``taskset``; each generator in turn is pinned to CPU 0 with one process and 64 connections:
``emrops loadtest run --closed 64 --processes 1``, Locust's FastHttpUser (``--processes`` not
used: one process), and ``wrk -t1 -c64`` as the ceiling. Target: emrops >= 1.0x Locust.

Part 2, the sim server: ``emrops loadtest run --scenario chat`` against the sim server on SQLite,
PostgreSQL with one instance and PostgreSQL with two instances (round-robin): maximum throughput
(closed model, 32 users) and p50/p95/p99 at a fixed open-model rate.

Usage: .venv/bin/python benchmarks/loadgen.py [--duration 10] [--rate 50] [--write]
Installs nginx and wrk (scripts/ensure-debs.sh) and Locust in var/venv-locust when missing.
Prints Markdown; --write puts it into the "loadgen" section of docs/benchmarks.md. Exits 3 when
emrops is slower than Locust.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from sim_server import free_port, servers, write_section  # noqa: E402

EMROPS = [sys.executable, "-m", "emrops"]
LOCUST_VENV = ROOT / "var" / "venv-locust"
PG_ADMIN = os.environ.get(
    "EMROPS_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_HOST = "127.0.0.1:5432"
CONNECTIONS = 64
TARGET = 1.0

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        root {tmp}/www;
        location / {{ }}
    }}
}}
"""

LOCUSTFILE = """
from locust import FastHttpUser, task


class Health(FastHttpUser):
    @task
    def health(self):
        self.client.get("/health")
"""


def ensure_tools() -> Path:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "ensure-debs.sh"), "nginx-light:nginx", "wrk"], check=True
    )
    locust = LOCUST_VENV / "bin" / "locust"
    if not locust.exists():
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)
        subprocess.run(
            [str(LOCUST_VENV / "bin" / "pip"), "install", "-q", "locust>=2.20"], check=True
        )
    return locust


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer") from None
            time.sleep(0.1)


@contextlib.contextmanager
def nginx() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="loadgen-nginx-") as tmp:
        port = free_port()
        os.chmod(tmp, 0o755)  # nginx workers run as an unprivileged user when started as root
        (Path(tmp) / "www").mkdir()
        (Path(tmp) / "www" / "health").write_text('{"status": "ok"}\n')
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
        proc = subprocess.Popen(
            ["taskset", "-c", "1", "nginx", "-p", tmp, "-c", str(conf), "-e", f"{tmp}/error.log"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/health")
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def run_wrk(url: str, duration: int) -> float:
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}s", url + "/health"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(match.group(1))


def run_emrops(args: list[str], pin: bool = True) -> dict:
    command = [*EMROPS, "loadtest", "run", *args, "--json"]
    if pin:
        command = ["taskset", "-c", "0", *command]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode not in (0, 3):
        raise RuntimeError(f"emrops loadtest failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout)


def run_locust(locust: Path, url: str, duration: int) -> float:
    with tempfile.TemporaryDirectory(prefix="loadgen-locust-") as tmp:
        locustfile = Path(tmp) / "locustfile.py"
        locustfile.write_text(LOCUSTFILE)
        proc = subprocess.run(
            [
                "taskset",
                "-c",
                "0",
                str(locust),
                "-f",
                str(locustfile),
                "--headless",
                "-u",
                str(CONNECTIONS),
                "-r",
                str(CONNECTIONS * 10),
                "-t",
                f"{duration}s",
                "--host",
                url,
                "--only-summary",
                "--json",
                "--loglevel",
                "ERROR",
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
        )
    stats = json.loads(proc.stdout)
    entry = next(s for s in stats if s["name"] == "/health")
    elapsed = entry["last_request_timestamp"] - entry["start_time"]
    return entry["num_requests"] / elapsed


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    name = f"emrops_loadgen_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def sim_figures(duration: int, rate: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="loadgen-sim-") as tmp, pg_database() as pg:
        lite = f"sqlite:///{tmp}/emrsim.db"
        for label, db, count in (
            ("SQLite, 1 instance", lite, 1),
            ("PostgreSQL, 1 instance", pg, 1),
            ("PostgreSQL, 2 instances", pg, 2),
        ):
            subprocess.run(
                [*EMROPS, "sim", "init-db", "--db", db], check=True, capture_output=True, cwd=ROOT
            )
            with servers(db, count) as urls:
                target = [a for u in urls for a in ("--url", u)]
                common = [*target, "--scenario", "chat", "--warmup", "3s"]
                closed = run_emrops(
                    [*common, "--closed", "32", "--duration", f"{duration}s"], pin=False
                )
                opened = run_emrops(
                    [*common, "--rate", f"{rate}/s", "--duration", f"{duration}s"], pin=False
                )
            rows.append({"label": label, "closed": closed, "open": opened})
    return rows


def markdown(gen: dict, sims: list[dict], duration: int, rate: int) -> str:
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average "
        f"{os.getloadavg()[0]:.1f} at the end.",
        "",
        f"Generator ceiling: nginx serving a 17-byte file on CPU 1, each generator on CPU 0 with "
        f"one process and {CONNECTIONS} connections, {duration} s each.",
        "",
        "| Generator | requests/s | vs Locust |",
        "| --- | ---: | ---: |",
    ]
    for name in ("emrops loadtest --closed 64", "Locust FastHttpUser", "wrk -t1 (ceiling)"):
        lines.append(
            f"| {name} | {gen[name]:,.0f} | {gen[name] / gen['Locust FastHttpUser']:.2f}x |"
        )
    if not sims:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        f"Sim server, chat scenario (`POST /api/sessions/{{id}}/messages`), {duration} s after a "
        f"3 s warm-up; generator and server(s) share the machine's CPUs.",
        "",
        f"| Database | max req/s (closed, 32 users) | p95 at max | p50 / p95 / p99 at {rate}/s "
        "(open model) | errors | generator reliable |",
        "| --- | ---: | ---: | --- | ---: | --- |",
    ]
    for row in sims:
        c, o = row["closed"]["summary"], row["open"]["summary"]
        ol = o["latency"]
        reliable = row["open"]["generator"]["reliable"] and row["closed"]["generator"]["reliable"]
        lines.append(
            f"| {row['label']} | {c['throughput']:.0f} | {c['latency']['p95_ms']:.0f} ms | "
            f"{ol['p50_ms']:.1f} / {ol['p95_ms']:.1f} / {ol['p99_ms']:.1f} ms | "
            f"{c['errors'] + o['errors']} | {'yes' if reliable else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rate", type=int, default=50, help="open-model rate for the sim figures")
    parser.add_argument("--skip-sim", action="store_true", help="only the generator comparison")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs two CPUs: nginx on one, the generator on the other")
    locust = ensure_tools()
    gen: dict[str, float] = {}
    with nginx() as url:
        run_wrk(url, 2)  # warm nginx and the page cache
        gen["wrk -t1 (ceiling)"] = run_wrk(url, args.duration)
        result = run_emrops(
            [
                "--url",
                url,
                "--scenario",
                "health",
                "--closed",
                str(CONNECTIONS),
                "--duration",
                f"{args.duration}s",
                "--warmup",
                "1s",
                "--max-inflight",
                str(CONNECTIONS),
            ]
        )
        gen["emrops loadtest --closed 64"] = result["summary"]["throughput"]
        gen["Locust FastHttpUser"] = run_locust(locust, url, args.duration)
    sims = [] if args.skip_sim else sim_figures(args.duration, args.rate)
    text = markdown(gen, sims, args.duration, args.rate)
    print(text)
    if args.write:
        write_section("loadgen", "Load generator (benchmarks/loadgen.py)", text)
    ratio = gen["emrops loadtest --closed 64"] / gen["Locust FastHttpUser"]
    if ratio < TARGET:
        print(f"emrops/Locust = {ratio:.2f}x, below the {TARGET:.1f}x target", file=sys.stderr)
        sys.exit(3)


if __name__ == "__main__":
    main()
