"""Client CPU per call of EMRsim's data layer (emrops.db.queries), old path against new, on SQLite
and PostgreSQL, in one run.

Each call is measured as the sim server performs it: ``chat.exchange`` is ``add_exchange`` with
the simulated patient's reply made inside (reply plus both inserts, one transaction), and
``last50`` is ``last_messages(50)`` on a session holding 60 messages. "old" is the data layer
before the lean path, kept frozen as the test oracle (tests/sim/oracle_queries.py); "new" is
emrops.db.queries. Both run on the same scratch database in alternating rounds.

CPU is this process's CPU time (``time.process_time``: user + system, all threads) divided by
the calls; it is much less sensitive to other load than wall time, but not immune (cache
pressure, frequency scaling). For SQLite it includes the database engine's own work, which runs
in this process by nature; PostgreSQL's server-side work is not included. Wall time per call is
printed too, as a diagnostic only.

Targets (issue #17): add_exchange <= 0.30 ms (SQLite) / 0.40 ms (PostgreSQL); last_messages(50)
<= 0.25 ms on both.

Usage: .venv/bin/python benchmarks/datapath.py [--calls 2000] [--rounds 3]
       [--engines sqlite,postgresql] [--write]
With --write the table goes into the "datapath" section of docs/benchmarks.md.
Needs PostgreSQL on 127.0.0.1:5432 for the postgresql run (`make postgres`).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from seed import scratch_database  # the script's folder is on sys.path
from sim_server import write_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the oracle lives under tests/

from emrops.db import queries  # noqa: E402
from emrops.db.engine import create_engine  # noqa: E402
from emrops.sim import patient  # noqa: E402
from tests.sim import oracle_queries as oracle  # noqa: E402

TARGETS_MS = {
    ("sqlite", "add_exchange"): 0.30,
    ("postgresql", "add_exchange"): 0.40,
    ("sqlite", "last_messages(50)"): 0.25,
    ("postgresql", "last_messages(50)"): 0.25,
}
QUESTIONS = ("Where is the pain?", "Any allergies?", "When did it start?", "Do you smoke?")


def _calls(path: str, engine: Any, session_id: Any) -> dict[str, Callable[[int], Any]]:
    if path == "old":
        return {
            "add_exchange": lambda i: oracle.add_exchange(
                engine, session_id, QUESTIONS[i % 4], reply=patient.reply
            ),
            "last_messages(50)": lambda _i: oracle.last_messages(engine, session_id, 50),
        }
    return {
        "add_exchange": lambda i: queries.add_exchange(
            engine, session_id, QUESTIONS[i % 4], reply=patient.reply
        ),
        "last_messages(50)": lambda _i: queries.last_messages(engine, session_id, 50),
    }


def _measure(fn: Callable[[int], Any], calls: int) -> tuple[float, float]:
    """(CPU ms per call, wall ms per call) over ``calls`` calls after 50 warm-up calls."""
    for i in range(50):
        fn(i)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(calls):
        fn(i)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    return 1000 * (cpu1 - cpu0) / calls, 1000 * (wall1 - wall0) / calls


def bench_engine(engine_name: str, calls: int, rounds: int) -> list[dict[str, Any]]:
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with scratch_database(engine_name, "datapath") as url:
        # the sim server's settings: a pool, no pre-ping for the new path (the old one pinged)
        engines = {
            "old": create_engine(url, pool_size=2, max_overflow=0),
            "new": create_engine(url, pool_size=2, max_overflow=0, pre_ping=False),
        }
        try:
            sessions = {}
            for path, engine in engines.items():
                session = queries.create_session(engine, 1)
                for i in range(30):  # 60 messages: last50 reads a full page
                    queries.add_exchange(engine, session.id, f"question {i}", reply=patient.reply)
                sessions[path] = session.id
            for _ in range(rounds):  # alternate old and new: drift hits both alike
                for path, engine in engines.items():
                    for op, fn in _calls(path, engine, sessions[path]).items():
                        results.setdefault((path, op), []).append(_measure(fn, calls))
        finally:
            for engine in engines.values():
                engine.dispose()
    rows = []
    for op in ("add_exchange", "last_messages(50)"):
        old = results[("old", op)]
        new = results[("new", op)]
        old_cpu = statistics.median(c for c, _w in old)
        new_cpu = statistics.median(c for c, _w in new)
        rows.append(
            {
                "engine": engine_name,
                "op": op,
                "old_cpu_ms": old_cpu,
                "new_cpu_ms": new_cpu,
                "old_wall_ms": statistics.median(w for _c, w in old),
                "new_wall_ms": statistics.median(w for _c, w in new),
                "target_ms": TARGETS_MS[(engine_name, op)],
            }
        )
    return rows


def markdown(rows: list[dict[str, Any]], calls: int, rounds: int) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"Measured {when} on {platform.machine()}, Python {platform.python_version()}; "
        f"{calls} calls per round after 50 warm-up calls, median of {rounds} rounds, old and new "
        "alternating on the same scratch database. CPU is this process's CPU time per call.",
        "",
        "| engine | call | old CPU ms | new CPU ms | new/old | target ms | met | "
        "old wall ms | new wall ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["new_cpu_ms"] / r["old_cpu_ms"] if r["old_cpu_ms"] else 0.0
        lines.append(
            f"| {r['engine']} | {r['op']} | {r['old_cpu_ms']:.3f} | {r['new_cpu_ms']:.3f} | "
            f"{ratio:.2f}x | {r['target_ms']:.2f} | "
            f"{'yes' if r['new_cpu_ms'] <= r['target_ms'] else 'no'} | "
            f"{r['old_wall_ms']:.3f} | {r['new_wall_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        rows += bench_engine(name, args.calls, args.rounds)
    text = markdown(rows, args.calls, args.rounds)
    print(text)
    if args.write:
        write_section("datapath", "Data layer CPU per call (benchmarks/datapath.py)", text)


if __name__ == "__main__":
    main()
