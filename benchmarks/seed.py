"""Time `emrops sim seed` (emrops.sim.seed.seed_database) on SQLite and PostgreSQL.

Seeds 20,000 sessions x 50 messages (1,000,000 messages) into a temporary SQLite file and
into a scratch PostgreSQL database (created and dropped here), and prints rows/s. As the
reference, the same rows for a smaller sample are inserted the ordinary way, with SQLAlchemy
Core ``conn.execute(table.insert(), rows)`` in one transaction, and the speed-up is reported.
With --write the figures go into the "seed" section of docs/benchmarks.md.

Usage: .venv/bin/python benchmarks/seed.py [--sessions 20000] [--messages-per-session 50]
       [--baseline-sessions 1000] [--engines sqlite,postgresql] [--write]
Needs PostgreSQL on 127.0.0.1:5432 for the postgresql run (`make postgres`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sim_server import write_section  # the script's folder is on sys.path

from emrops.db.engine import begin_write, create_engine
from emrops.db.migrations_api import upgrade
from emrops.db.schema import messages, sessions, users, vitals
from emrops.sim.catalog import ensure_scenarios
from emrops.sim.seed import seed_database

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = os.environ.get(
    "EMROPS_BENCH_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
TABLES = (users, sessions, messages, vitals)  # parents first


@contextlib.contextmanager
def scratch_database(engine_name: str, label: str) -> Iterator[str]:
    """A fresh, initialised database URL (schema + scenario catalog), removed afterwards."""
    if engine_name == "sqlite":
        with tempfile.TemporaryDirectory(prefix="emrops-seed-bench-") as tmp:
            url = f"sqlite:///{tmp}/{label}.db"
            _init(url)
            yield url
        return
    name = f"emrops_bench_seed_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        url = PG_URL.format(name=name)
        _init(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _init(url: str) -> None:
    engine = create_engine(url)
    try:
        upgrade(engine)
        ensure_scenarios(engine)
    finally:
        engine.dispose()


def _size(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                path = Path(engine.url.database or "")
                return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar())
    finally:
        engine.dispose()


def bench_seed(engine_name: str, sessions_n: int, mps: int) -> dict:
    """The fast path: seed_database on a fresh database, timed end to end."""
    with scratch_database(engine_name, "fast") as url:
        engine = create_engine(url)
        try:
            load = os.getloadavg()[0]
            cpu, started = time.process_time(), time.perf_counter()
            result = seed_database(engine, sessions=sessions_n, messages_per_session=mps)
            wall = time.perf_counter() - started
            cpu = time.process_time() - cpu
        finally:
            engine.dispose()
        size = _size(url)
    rows = result.users + result.sessions + result.messages + result.vitals
    return {
        "engine": engine_name,
        "method": "emrops sim seed",
        "sessions": result.sessions,
        "messages": result.messages,
        "rows": rows,
        "seconds": round(wall, 2),
        "messages_per_s": round(result.messages / wall),
        "rows_per_s": round(rows / wall),
        "db_mb": round(size / 1e6, 1),
        # The machine may be shared: this process's CPU time and the load when it started.
        "client_cpu_s": round(cpu, 2),
        "load_avg_1m": round(load, 2),
    }


def bench_reference(engine_name: str, sessions_n: int, mps: int) -> dict:
    """The ordinary path for the same rows: seed a sample, read it back, re-insert it with Core."""
    with scratch_database(engine_name, "sample") as sample_url:
        engine = create_engine(sample_url)
        try:
            seed_database(engine, sessions=sessions_n, messages_per_session=mps)
            with engine.connect() as conn:
                # Message and vitals ids are left to the database, as the fast path does.
                data = {
                    t.name: [
                        {
                            k: v
                            for k, v in row._mapping.items()
                            if k != "id" or t in (users, sessions)
                        }
                        for row in conn.execute(sa.select(t))
                    ]
                    for t in TABLES
                }
        finally:
            engine.dispose()
    with scratch_database(engine_name, "core") as url:
        engine = create_engine(url)
        try:
            started = time.perf_counter()
            with begin_write(engine) as conn:
                for table in TABLES:
                    conn.execute(table.insert(), data[table.name])
            wall = time.perf_counter() - started
        finally:
            engine.dispose()
    rows = sum(len(v) for v in data.values())
    return {
        "engine": engine_name,
        "method": "SQLAlchemy Core executemany",
        "sessions": sessions_n,
        "messages": len(data["messages"]),
        "rows": rows,
        "seconds": round(wall, 2),
        "messages_per_s": round(len(data["messages"]) / wall),
        "rows_per_s": round(rows / wall),
        "db_mb": None,
        "client_cpu_s": None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def markdown(results: list[dict], mps: int) -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}, SQLite {_sqlite_version()}, "
        f"{mps} messages per session; PostgreSQL on the same machine.",
        "",
        "| engine | method | sessions | messages | seconds | messages/s | rows/s | load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['method']} | {r['sessions']:,} | {r['messages']:,} "
            f"| {r['seconds']} | {r['messages_per_s']:,} | {r['rows_per_s']:,} "
            f"| {r['load_avg_1m']} |"
        )
    lines.append("")
    for engine_name in ("sqlite", "postgresql"):
        fast = [r for r in results if r["engine"] == engine_name and r["db_mb"] is not None]
        ref = [r for r in results if r["engine"] == engine_name and r["db_mb"] is None]
        if fast and ref:
            ratio = fast[0]["rows_per_s"] / ref[0]["rows_per_s"]
            lines.append(
                f"- {engine_name}: emrops sim seed / SQLAlchemy Core = {ratio:.1f}x rows/s"
            )
    return "\n".join(lines) + "\n"


def _sqlite_version() -> str:
    import sqlite3

    return sqlite3.sqlite_version


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--messages-per-session", type=int, default=50)
    parser.add_argument(
        "--baseline-sessions",
        type=int,
        default=1_000,
        help="sessions for the SQLAlchemy Core reference (0 to skip it)",
    )
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    results = []
    for engine_name in args.engines.split(","):
        results.append(bench_seed(engine_name, args.sessions, args.messages_per_session))
        print(json.dumps(results[-1]), flush=True)
        if args.baseline_sessions:
            results.append(
                bench_reference(engine_name, args.baseline_sessions, args.messages_per_session)
            )
            print(json.dumps(results[-1]), flush=True)
    text = markdown(results, args.messages_per_session)
    print()
    print(text)
    if args.write:
        write_section("seed", "Bulk seeding (benchmarks/seed.py)", text)


if __name__ == "__main__":
    main()
