"""The benchmark harness's own overhead: emrops' runner versus ``pgbench -S`` (select-only).

Both run pgbench's select-only transaction (``SELECT abalance FROM pgbench_accounts WHERE
aid = :aid`` with a random aid) on the same scratch database of the same server, in the same
run, at 1 and 4 clients. pgbench is C with one connection per client; emrops runs the query
through SQLAlchemy + psycopg 3 from Python threads with the pool the benchmark uses, timing each
query into HdrHistograms. Target: emrops reaches at least 0.5x pgbench's TPS.

Usage:
    .venv/bin/python benchmarks/harness.py [--server postgresql+psycopg://postgres@127.0.0.1/postgres]
        [--clients 1,4] [--duration 10] [--scale 1]

Prints a Markdown table (for docs/benchmarks.md) and exits 3 when a ratio misses the target.
The scratch database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import platform
import random
import re
import subprocess
import sys
import uuid

import psycopg
import sqlalchemy as sa
from psycopg import sql

from emrops.bench.runner import run_cell
from emrops.bench.scratch import open_engine
from emrops.bench.workloads import Dataset
from emrops.db.engine import parse_db_url

TARGET = 0.5
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")
_SELECT = sa.text("SELECT abalance FROM pgbench_accounts WHERE aid = :aid")


class SelectOnly:
    """pgbench's built-in select-only script as an emrops client, through the SQLAlchemy pool
    exactly like the EMRsim data layer (checkout with pre-ping, reset on return)."""

    def __init__(self, engine: sa.Engine, accounts: int, seed: int) -> None:
        self.engine = engine
        self.accounts = accounts
        self.rng = random.Random(seed)

    def step(self):  # type: ignore[no-untyped-def]
        aid = self.rng.randint(1, self.accounts)

        def query() -> None:
            with self.engine.connect() as conn:
                conn.execute(_SELECT, {"aid": aid}).scalar()

        return [("pgbench.select", query)]


class HeldSelectOnly:
    """The same transaction on one psycopg connection held by the client (as pgbench does):
    what is left is the runner's own overhead (threads, clock, histogram)."""

    def __init__(self, conninfo: str, accounts: int, seed: int) -> None:
        self.conn = psycopg.connect(conninfo, autocommit=True)
        self.accounts = accounts
        self.rng = random.Random(seed)

    def step(self):  # type: ignore[no-untyped-def]
        aid = self.rng.randint(1, self.accounts)
        conn = self.conn

        def query() -> None:
            conn.execute(
                "SELECT abalance FROM pgbench_accounts WHERE aid = %s", (aid,), prepare=True
            ).fetchone()

        return [("pgbench.select", query)]


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


def pgbench_tps(url: sa.URL, db: str, clients: int, seconds: int) -> float:
    out = subprocess.run(
        ["pgbench", "-S", "-n", "-c", str(clients), "-j", str(clients), "-T", str(seconds), db],
        env=_libpq(url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = _TPS.search(out)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{out}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--scale", type=int, default=1)
    args = parser.parse_args(argv)
    server = parse_db_url(args.server)
    name = f"emrops_harness_{uuid.uuid4().hex[:10]}"
    admin_info = server.url.set(drivername="postgresql").render_as_string(hide_password=False)
    rows = []
    with psycopg.connect(admin_info, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(args.scale), name],
            env=_libpq(server.url),
            capture_output=True,
            check=True,
        )
        accounts = 100_000 * args.scale
        scratch = server.url.set(database=name)
        scratch_info = scratch.set(drivername="postgresql").render_as_string(hide_password=False)
        for n in (int(c) for c in args.clients.split(",")):
            theirs = pgbench_tps(server.url, name, n, args.duration)
            held: list[HeldSelectOnly] = []

            def make_held(seed: int, _held: list[HeldSelectOnly] = held) -> HeldSelectOnly:
                _held.append(HeldSelectOnly(scratch_info, accounts, seed))
                return _held[-1]

            try:
                run = run_cell(
                    None,  # type: ignore[arg-type]
                    Dataset(()),
                    "read",
                    n,
                    warmup_s=1.0,
                    duration_s=float(args.duration),
                    make_client=make_held,
                )
            finally:
                for client in held:
                    client.conn.close()
            rows.append(("runner, held connection", n, theirs, run))
            engine = open_engine(parse_db_url(scratch.render_as_string(hide_password=False)), n)
            try:
                run = run_cell(
                    engine,
                    Dataset(()),
                    "read",
                    n,
                    warmup_s=1.0,
                    duration_s=float(args.duration),
                    make_client=functools.partial(SelectOnly, engine, accounts),
                )
            finally:
                engine.dispose()
            rows.append(("runner + SQLAlchemy pool (data-layer path)", n, theirs, run))
    finally:
        with psycopg.connect(admin_info, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, pgbench scale {args.scale}, {args.duration}s per cell; "
        f"{now}; load average at the end {os.getloadavg()[0]:.2f}.\n"
    )
    print("| emrops client | clients | pgbench -S TPS | emrops TPS | ratio | p50 / p99 ms | CPU |")
    print("|---|---|---|---|---|---|---|")
    ok = True
    for label, n, theirs, run in rows:
        s = run.all_ops().summary()
        ratio = run.ops_per_s / theirs if theirs else 0.0
        if label.startswith("runner, held"):
            ok &= ratio >= TARGET  # the target is about the harness, not about SQLAlchemy
        print(
            f"| {label} | {n} | {theirs:,.0f} | {run.ops_per_s:,.0f} | {ratio:.2f}x "
            f"| {s.p50_ms:.3f} / {s.p99_ms:.3f} | {run.client_cpu_pct:.0f}% |"
        )
    print(
        f"\nTarget: the runner with a held connection reaches >= {TARGET}x pgbench's TPS: "
        f"{'met' if ok else 'MISSED'}."
    )
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
