#!/usr/bin/env python3
"""Benchmark `emrops migrate-db run` against pgloader on two datasets, in one run.

Datasets (each built once into --workdir, deterministic):
  emrsim  `emrops sim seed`: 1,000,000 messages by default (--messages).
  sensor  shaped unlike it: a REAL/NUMERIC-heavy `vitals` sensor table (100k rows), `events`
          whose TEXT `payload` holds JSON on 9 rows in 10 plus a JSON-declared `meta` column
          (200k rows), a 30-column `wide` table (50k rows) and a WITHOUT ROWID `kv` table
          (50k rows); --rows-factor scales these counts.
For each dataset, in the same run and on the same server, each round times:
  1. pgloader (Debian package; `bash scripts/ensure-debs.sh pgloader`), no verification,
  2. `emrops migrate-db run --no-verify` (pre-migration backup included),
  3. `emrops migrate-db run` (with its built-in verification),
  4. `emrops migrate-db verify` (a full re-scan of the source against the target).
Rounds alternate who goes first (pgloader, then emrops; then emrops, then pgloader), so neither
tool always starts on a warmer machine. Each step starts after a CHECKPOINT and sync. Medians
over --repeat rounds (3) are reported with the spread (lowest-highest ratio to pgloader of the
rounds). Wall time and peak RSS (the largest process of the command, children included) come
from /usr/bin/time. With --scale every dataset is also run at 10x its rows (`make bench` only:
it needs a few GB of disk and minutes); pgloader that fails at its default heap is retried
with --dynamic-space-size 4096 and the table says so. Prints a markdown block for
docs/benchmarks.md.

Usage: python benchmarks/migrate.py [--messages 1000000] [--rows-factor 1.0] [--scale]
       python benchmarks/migrate.py --quick   # a tiny end-to-end check, no figures to keep
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import psycopg

ADMIN = os.environ.get(
    "EMROPS_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
HOST = os.environ.get("EMROPS_BENCH_PG_HOST", "127.0.0.1:5432")
EMROPS = [sys.executable, "-m", "emrops"]
PGLOADER_HEAP_MB = 4096  # the retry's --dynamic-space-size


class Result(NamedTuple):
    wall: float  # seconds
    rss: int  # peak RSS in MB (the largest process of the command)
    rc: int  # exit code
    cpu: float = 0.0  # user + system seconds of the command and its children (not the server)
    phases: dict[str, float] = {}  # noqa: RUF012 - emrops run: seconds per phase (its --json)


def settle() -> None:
    """Start every timed step from the same state: the previous step's dirty pages written
    out (CHECKPOINT, sync), so no step pays for the one before it."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def timed(cmd: list[str], env: dict[str, str] | None = None) -> Result:
    """Wall seconds, peak RSS, exit code and CPU seconds of a command, via /usr/bin/time; and
    the phases an emrops ``--json`` output reports."""
    settle()
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M %U %S", *cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
    )
    line = [x for x in out.stderr.splitlines() if x.startswith("TIME ")][-1]
    _tag, wall, rss_kb, user, system = line.split()
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
    phases: dict[str, float] = {}
    if "--json" in cmd:
        with contextlib.suppress(ValueError, AttributeError):
            phases = dict(json.loads(out.stdout).get("phases") or {})
    return Result(
        float(wall), int(rss_kb) // 1024, out.returncode, float(user) + float(system), phases
    )


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


# --- datasets -------------------------------------------------------------------------------


def build_emrsim(path: Path, messages: int) -> None:
    subprocess.run(
        [
            *EMROPS,
            "sim",
            "seed",
            "--db",
            f"sqlite:///{path}",
            "--sessions",
            str(max(1, messages // 50)),
            "--messages-per-session",
            "50",
            "--seed",
            "7",
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


SENSOR_ROWS = {"vitals": 100_000, "events": 200_000, "wide": 50_000, "kv": 50_000}
BATCH = 20_000


def _insert(conn: sqlite3.Connection, sql: str, rows: int, make: Callable[[int], tuple]) -> None:
    for start in range(0, rows, BATCH):  # batches: memory stays flat at 10x too
        conn.executemany(sql, [make(i) for i in range(start, min(rows, start + BATCH))])


def build_sensor(path: Path, factor: float) -> None:
    """The second dataset (see the module docstring); written to a temporary name first."""
    rows = {name: max(10, int(n * factor)) for name, n in SENSOR_ROWS.items()}
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    rng = random.Random(16)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    conn = sqlite3.connect(tmp)
    conn.executescript(
        """
        PRAGMA journal_mode = OFF;
        PRAGMA synchronous = OFF;
        CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT NOT NULL UNIQUE, model TEXT);
        CREATE TABLE vitals (
            id INTEGER PRIMARY KEY,
            device_id INTEGER NOT NULL REFERENCES devices(id),
            taken_at DATETIME NOT NULL,
            heart_rate REAL,
            spo2 REAL,
            temperature NUMERIC(4,1),
            systolic NUMERIC,
            diastolic INTEGER,
            glucose DOUBLE PRECISION,
            latitude REAL,
            longitude REAL,
            battery REAL NOT NULL
        );
        CREATE INDEX vitals_device_taken ON vitals (device_id, taken_at);
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            device_id INTEGER REFERENCES devices(id),
            kind TEXT NOT NULL,
            payload TEXT,
            meta JSON
        );
        CREATE TABLE kv (
            k TEXT PRIMARY KEY,
            v TEXT NOT NULL,
            version INTEGER NOT NULL,
            updated_at DATETIME
        ) WITHOUT ROWID;
        """
    )
    wide_cols = ", ".join(
        f"c{i:02d} {('INTEGER', 'REAL', 'TEXT', 'NUMERIC(10,2)', 'BOOLEAN')[i % 5]}"  # 29 + id
        for i in range(1, 30)
    )
    conn.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {wide_cols})")
    devices = 500
    conn.executemany(
        "INSERT INTO devices VALUES (?, ?, ?)",
        [(i, f"SN-{i:06d}", rng.choice(["vx-1", "vx-2", "pulse"])) for i in range(1, devices + 1)],
    )

    def vital(i: int) -> tuple:
        at = base + timedelta(seconds=7 * i)
        return (
            i + 1,
            1 + i % devices,
            at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            round(rng.gauss(72, 9), 1),
            None if i % 17 == 0 else round(rng.uniform(88, 100), 2),
            round(rng.gauss(36.8, 0.4), 1),
            round(rng.gauss(120, 12)),
            int(rng.gauss(80, 8)),
            rng.lognormvariate(1.6, 0.2),  # full-precision doubles
            round(rng.uniform(-90, 90), 6),
            round(rng.uniform(-180, 180), 6),
            rng.random(),
        )

    _insert(conn, "INSERT INTO vitals VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows["vitals"], vital)
    kinds = ["alarm", "reading", "battery", "sync", "note"]

    def event(i: int) -> tuple:
        doc = {
            "seq": i,
            "source": rng.choice(["ble", "wifi", "manual"]),
            "level": round(rng.uniform(0, 1), 3),
            "tags": rng.sample(["night", "rest", "walk", "ward-3", "é-unicode"], 2),
            "fw": {"version": f"{rng.randint(1, 4)}.{rng.randint(0, 20)}", "ok": i % 9 != 0},
        }
        payload = json.dumps(doc) if i % 10 else f"free text note {i}: tab\there"
        meta = None if i % 4 == 0 else json.dumps({"by": "sensor", "n": i, "x": [1, 2.5]})
        return (i + 1, 1 + i % devices, kinds[i % len(kinds)], payload, meta)

    _insert(conn, "INSERT INTO events VALUES (?,?,?,?,?)", rows["events"], event)

    def wide(i: int) -> tuple:
        out: list[object] = [i + 1]
        for c in range(1, 30):
            kind = c % 5
            if i % (c + 3) == 0:
                out.append(None)
            elif kind == 0:  # the declared types cycle INTEGER, REAL, TEXT, NUMERIC, BOOLEAN
                out.append(rng.randint(-(10**9), 10**9))
            elif kind == 1:
                out.append(rng.uniform(-1e6, 1e6))
            elif kind == 2:
                out.append(f"value {c} of row {i}")
            elif kind == 3:
                out.append(round(rng.uniform(-1e5, 1e5), 2))
            else:
                out.append(i % 2)
        return tuple(out)

    marks = ", ".join("?" * 30)
    _insert(conn, f"INSERT INTO wide VALUES ({marks})", rows["wide"], wide)

    def kv(i: int) -> tuple:
        at = (base + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S")
        return (f"device/{i % devices}/setting/{i:07d}", f"v{rng.getrandbits(48):012x}", i, at)

    _insert(conn, "INSERT INTO kv VALUES (?,?,?,?)", rows["kv"], kv)
    conn.commit()
    conn.close()
    tmp.rename(path)


# --- timing ---------------------------------------------------------------------------------


def pgloader(src: Path, url: str) -> tuple[Result, bool]:
    """pgloader's result; a failure at the default heap is retried with a bigger one (True)."""
    result = timed(["pgloader", str(src), url])
    if result[2] == 0:
        return result, False
    print(f"pgloader exit {result[2]}: retrying with a {PGLOADER_HEAP_MB} MB heap", file=sys.stderr)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    return timed(["pgloader", "--dynamic-space-size", str(PGLOADER_HEAP_MB), str(src), url]), True


def one_round(
    src: Path, env: dict[str, str], jobs_n: int, pgloader_first: bool
) -> tuple[dict[str, Result], bool]:
    """pgloader, run --no-verify, run and verify, each into a fresh database."""
    dbs = [create_db("bench_pgloader"), create_db("bench_emrops_nv"), create_db("bench_emrops")]
    results: dict[str, Result] = {}
    retried = False
    jobs = ["--jobs", str(jobs_n)] if jobs_n else []
    migrate = [*EMROPS, "migrate-db"]
    source = ["--from", f"sqlite:///{src}"]
    state = Path(env["EMROPS_STATE_DIR"])

    def fresh() -> dict[str, str]:
        """An empty state folder and backup store for each run, so every run takes its own
        pinned backup (a rerun of an unchanged source reuses the earlier run's backup, which
        is not the first migration a user times)."""
        for folder in (state, Path(env["EMROPS_BACKUP_STORE"])):
            shutil.rmtree(folder, ignore_errors=True)
        return env

    try:
        nv_url = f"postgresql+psycopg://postgres@{HOST}/{dbs[1]}"
        full_url = f"postgresql+psycopg://postgres@{HOST}/{dbs[2]}"
        steps: list[tuple[str, Callable[[], Result]]] = [
            (
                "run",
                lambda: timed(
                    [*migrate, "run", *source, "--to", nv_url, "--no-verify", "--json", *jobs],
                    fresh(),
                ),
            ),
            (
                "run+verify",
                lambda: timed(
                    [*migrate, "run", *source, "--to", full_url, "--json", *jobs], fresh()
                ),
            ),
            (
                "verify",
                lambda: timed([*migrate, "verify", *source, "--to", full_url, "--json"], env),
            ),
        ]

        def run_pgloader() -> Result:
            nonlocal retried
            result, retried = pgloader(src, f"postgresql://postgres@{HOST}/{dbs[0]}")
            return result

        order = (
            [("pgloader", run_pgloader), *steps]
            if pgloader_first
            else [
                *steps,
                ("pgloader", run_pgloader),
            ]
        )
        for key, step in order:
            print(f"  {key} ...", file=sys.stderr)
            results[key] = step()
    finally:
        for name in dbs:
            drop_db(name)
    return results, retried


TARGETS = {"pgloader": "", "run": "<= 0.6", "run+verify": "<= 1.0", "verify": "", "run,verify": ""}
LABELS = {
    "pgloader": "pgloader (no verification)",
    "run": "emrops run --no-verify (backup included)",
    "run+verify": "emrops run (built-in full verification)",
    "verify": "emrops verify (standalone, rescans source)",
    "run,verify": "emrops run --no-verify, then verify (two commands)",
}


def report(title: str, src: Path, rounds: list[dict[str, Result]], retried: bool) -> list[str]:
    """The markdown table of one dataset at one scale: medians, spread, peak RSS, exits."""
    for r in rounds:  # the same checks as two commands: `run --no-verify`, then `verify`
        r["run,verify"] = Result(
            r["run"].wall + r["verify"].wall,
            max(r["run"].rss, r["verify"].rss),
            max(r["run"].rc, r["verify"].rc),
            r["run"].cpu + r["verify"].cpu,
        )
    lines = [f"#### {title} ({src.stat().st_size / 1e6:.0f} MB SQLite)", ""]
    if retried:
        lines += [
            f"pgloader failed at its default heap and was rerun with --dynamic-space-size "
            f"{PGLOADER_HEAP_MB} (the time shown).",
            "",
        ]
    lines += [
        "| step | wall s (median) | ratio to pgloader | spread (ratio) | target | client CPU s "
        "| peak RSS MB | exit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    pgl = statistics.median(r["pgloader"].wall for r in rounds)
    for key in LABELS:
        wall = statistics.median(r[key].wall for r in rounds)
        ratios = [r[key].wall / r["pgloader"].wall for r in rounds if r["pgloader"].wall > 0]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
        rss = max(r[key].rss for r in rounds)
        rc = max(r[key].rc for r in rounds)
        cpu = statistics.median(r[key].cpu for r in rounds)
        ratio = f"{wall / pgl:.2f}" if pgl > 0 else ""
        lines.append(
            f"| {LABELS[key]} | {wall:.1f} | {ratio} | {spread} | {TARGETS[key]} | {cpu:.1f} "
            f"| {rss} | {rc} |"
        )
    lines.append("")
    for key in ("run", "run+verify"):  # where emrops' wall time goes (medians per phase)
        names = list(dict.fromkeys(n for r in rounds for n in r[key].phases))
        if names:
            parts = [
                f"{n} {statistics.median(r[key].phases.get(n, 0.0) for r in rounds):.2f}"
                for n in names
            ]
            lines.append(f"Phases of {LABELS[key]}, median s: {'; '.join(parts)}.  ")
    lines.append(
        "Client CPU: user + system seconds of the command and its children (pgloader does its "
        "work in its own process; emrops' COPY parsing, index builds and target checksums run "
        "in PostgreSQL and are not counted).  "
    )
    lines.append("")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1_000_000, help="emrsim dataset size")
    ap.add_argument(
        "--rows-factor", type=float, default=1.0, help="scales the sensor dataset's rows"
    )
    ap.add_argument("--scale", action="store_true", help="also run every dataset at 10x rows")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke run")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/emrops-bench-migrate"))
    ap.add_argument("--jobs", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    args = ap.parse_args()
    if args.quick:
        args.messages, args.rows_factor, args.repeat = 2_000, 0.02, 1
    if not shutil.which("pgloader"):
        print("pgloader missing: run `bash scripts/ensure-debs.sh pgloader`", file=sys.stderr)
        return 1
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env["EMROPS_STATE_DIR"] = str(args.workdir / "state")
    env["EMROPS_BACKUP_STORE"] = str(args.workdir / "backups")
    scales = [1, 10] if args.scale else [1]
    out = [
        "### migrate-db vs pgloader, two datasets",
        "",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.platform()}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; pgloader {pgloader_version()}; "
        f"medians of {args.repeat} rounds, pgloader and emrops alternating who goes first; "
        f"load average at the start {_load()}.",
        "",
        "Targets, on both datasets and at 10x: `run --no-verify` <= 0.6x pgloader, verified "
        "`run` <= 1.0x, peak RSS <= 300 MB.",
        "",
    ]
    for scale in scales:
        messages = args.messages * scale
        factor = args.rows_factor * scale
        datasets = [
            (
                f"emrsim, {messages:,} messages, {scale}x",
                args.workdir / f"emrsim-{messages}.db",
                lambda p, m=messages: build_emrsim(p, m),
            ),
            (
                f"sensor (REAL/NUMERIC, JSON text, 30 columns, WITHOUT ROWID), rows x{factor:g}",
                args.workdir / f"sensor-{factor:g}.db",
                lambda p, f=factor: build_sensor(p, f),
            ),
        ]
        for title, src, build in datasets:
            if not src.exists():
                print(f"building {src} ...", file=sys.stderr)
                build(src)
            rounds: list[dict[str, Result]] = []
            retried = False
            for n in range(args.repeat):
                print(f"{title}: round {n + 1} of {args.repeat}", file=sys.stderr)
                result, again = one_round(src, env, args.jobs, pgloader_first=n % 2 == 0)
                rounds.append(result)
                retried = retried or again
            out += report(title, src, rounds, retried)
    out.append(f"Load average at the end: {_load()}.")
    print("\n".join(out))
    return 0


def _load() -> str:
    """The 1, 5 and 15 minute load averages (timings on a loaded machine are not comparable)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
