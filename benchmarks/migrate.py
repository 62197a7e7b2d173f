#!/usr/bin/env python3
"""Benchmark `emrops migrate-db run` against pgloader on the same SQLite file and PostgreSQL.

Seeds an EMRsim database (1,000,000 messages by default), then in the same run and on the same
server times:
  1. pgloader (Debian package; `bash scripts/ensure-debs.sh pgloader`) with no verification,
  2. `emrops migrate-db run --no-verify` (pre-migration backup included),
  3. `emrops migrate-db run` (with its built-in verification: counts + per-row checksums on both
     sides, sequences, constraint/index inventory),
  4. `emrops migrate-db verify` (a full re-scan of the source against the target).
Each step starts after a CHECKPOINT and sync (no step pays for the previous one's writes);
the whole sequence runs --repeat times (3) and the medians are reported. Wall time and peak RSS
come from /usr/bin/time. Prints a markdown block for docs/benchmarks.md.

Usage: python benchmarks/migrate.py [--messages 1000000] [--workdir /tmp/emrops-bench]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ADMIN = os.environ.get(
    "EMROPS_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
HOST = os.environ.get("EMROPS_BENCH_PG_HOST", "127.0.0.1:5432")
EMROPS = [sys.executable, "-m", "emrops"]


def settle() -> None:
    """Start every timed step from the same state: the previous step's dirty pages written
    out (CHECKPOINT, sync), so no step pays for the one before it."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, int]:
    """(wall seconds, peak RSS in MB, exit code) of a command, via /usr/bin/time."""
    settle()
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M", *cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = [x for x in out.stderr.splitlines() if x.startswith("TIME ")][-1]
    _tag, wall, rss_kb = line.split()
    if out.returncode not in (0,):
        sys.stderr.write(out.stderr[-2000:])
    return float(wall), int(rss_kb) // 1024, out.returncode


def pgloader_version() -> str:
    out = subprocess.run(["pgloader", "--version"], capture_output=True, text=True).stdout
    return out.split()[2] if len(out.split()) > 2 else out.strip()


def create_db(prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_db(name: str) -> None:
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def one_round(src: Path, env: dict[str, str], jobs_n: int) -> dict[str, tuple[float, int, int]]:
    """pgloader, run --no-verify, run and verify, each into a fresh database."""
    dbs = [create_db("bench_pgloader"), create_db("bench_emrops_nv"), create_db("bench_emrops")]
    results: dict[str, tuple[float, int, int]] = {}
    try:
        pgl_url = f"postgresql://postgres@{HOST}/{dbs[0]}"
        print("pgloader ...", file=sys.stderr)
        results["pgloader"] = timed(["pgloader", str(src), pgl_url])
        jobs = ["--jobs", str(jobs_n)] if jobs_n else []
        nv_url = f"postgresql+psycopg://postgres@{HOST}/{dbs[1]}"
        print("emrops run --no-verify ...", file=sys.stderr)
        results["run"] = timed(
            [
                *EMROPS,
                "migrate-db",
                "run",
                "--from",
                f"sqlite:///{src}",
                "--to",
                nv_url,
                "--no-verify",
                "--json",
                *jobs,
            ],
            env,
        )
        full_url = f"postgresql+psycopg://postgres@{HOST}/{dbs[2]}"
        print("emrops run (verified) ...", file=sys.stderr)
        results["run+verify"] = timed(
            [
                *EMROPS,
                "migrate-db",
                "run",
                "--from",
                f"sqlite:///{src}",
                "--to",
                full_url,
                "--json",
                *jobs,
            ],
            env,
        )
        print("emrops verify ...", file=sys.stderr)
        results["verify"] = timed(
            [
                *EMROPS,
                "migrate-db",
                "verify",
                "--from",
                f"sqlite:///{src}",
                "--to",
                full_url,
                "--json",
            ],
            env,
        )
    finally:
        for name in dbs:
            drop_db(name)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/emrops-bench-migrate"))
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    args = ap.parse_args()
    if not shutil.which("pgloader"):
        print("pgloader missing: run `bash scripts/ensure-debs.sh pgloader`", file=sys.stderr)
        return 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    sessions = max(1, args.messages // 50)
    src = args.workdir / f"emrsim-{args.messages}.db"
    if not src.exists():
        print(f"seeding {args.messages} messages into {src} ...", file=sys.stderr)
        subprocess.run(
            [
                *EMROPS,
                "sim",
                "seed",
                "--db",
                f"sqlite:///{src}",
                "--sessions",
                str(sessions),
                "--messages-per-session",
                "50",
                "--seed",
                "7",
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env["EMROPS_STATE_DIR"] = str(args.workdir / "state")
    env["EMROPS_BACKUP_STORE"] = str(args.workdir / "backups")
    rounds: list[dict[str, tuple[float, int, int]]] = []
    for n in range(args.repeat):
        print(f"round {n + 1} of {args.repeat}", file=sys.stderr)
        rounds.append(one_round(src, env, args.jobs))
    results = {
        key: (
            statistics.median(r[key][0] for r in rounds),
            max(r[key][1] for r in rounds),
            max(r[key][2] for r in rounds),
        )
        for key in rounds[0]
    }
    # the same checks as two commands: `run --no-verify`, then `verify`
    for r in rounds:
        r["run,verify"] = (
            r["run"][0] + r["verify"][0],
            max(r["run"][1], r["verify"][1]),
            max(r["run"][2], r["verify"][2]),
        )
    results["run,verify"] = (
        statistics.median(r["run,verify"][0] for r in rounds),
        max(r["run,verify"][1] for r in rounds),
        max(r["run,verify"][2] for r in rounds),
    )
    pgl = results["pgloader"][0]
    size_mb = src.stat().st_size / 1e6
    print(f"\n### migrate-db vs pgloader ({args.messages:,} messages, {size_mb:.0f} MB SQLite)\n")
    print(
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; pgloader "
        f"{pgloader_version()}\n"
    )
    print("| step | wall s | ratio to pgloader | target | peak RSS MB | exit |")
    print("|---|---:|---:|---:|---:|---:|")
    targets = {
        "pgloader": "",
        "run": "<= 0.6",
        "run+verify": "<= 1.0",
        "verify": "",
        "run,verify": "<= 1.0",
    }
    labels = {
        "pgloader": "pgloader (no verification)",
        "run": "emrops run --no-verify (backup included)",
        "run+verify": "emrops run (built-in full verification)",
        "verify": "emrops verify (standalone, rescans source)",
        "run,verify": "emrops run --no-verify, then verify (two commands)",
    }
    for key, (wall, rss, rc) in results.items():
        print(f"| {labels[key]} | {wall:.1f} | {wall / pgl:.2f} | {targets[key]} | {rss} | {rc} |")
    each = "; ".join(
        f"{key}: " + ", ".join(f"{r[key][0] / r['pgloader'][0]:.2f}" for r in rounds)
        for key in ("run", "run+verify", "verify", "run,verify")
    )
    print(f"\nMedians of {len(rounds)} rounds; ratio to pgloader in each round: {each}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
