"""Benchmark: `emrops backup run` / `verify` against the shell tools, in the same run.

Builds (once, cached) an SQLite database with `emrops sim seed` of 1,000,000 messages, then
measures, each REPEAT times (median wall time):

- backup: ``emrops backup run`` vs ``sqlite3 DB ".backup tmp" && zstd -3 tmp && sha256sum tmp.zst``
- verify: ``emrops backup verify`` vs ``sqlite3 DB "PRAGMA integrity_check"``

and the peak RSS of the emrops processes. Targets (issue 3): run <= 0.7x the pipeline,
verify <= 2.0x integrity_check, peak memory < 200 MB. Writes the figures to
docs/benchmarks.md between the ``backup`` markers and prints them.

Usage: .venv/bin/python benchmarks/backup.py [--work DIR] [--sessions 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- backup:start -->", "<!-- backup:end -->"


def timed(cmd: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None):
    """(wall seconds, peak RSS in KiB of this process, stdout); exits on failure."""
    started = time.perf_counter()
    out = subprocess.DEVNULL if shell else subprocess.PIPE
    proc = subprocess.Popen(cmd, shell=shell, stdout=out, stderr=subprocess.PIPE, env=env)
    stdout = proc.stdout.read() if proc.stdout else b""
    stderr = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {cmd}\n{stderr.decode()}")
    return seconds, usage.ru_maxrss, stdout.decode()


def emrops(*args: str) -> list[str]:
    return [sys.executable, "-m", "emrops", *args]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/emrops-bench-backup"))
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--messages-per-session", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for tool in ("sqlite3", "zstd", "sha256sum"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: `make tools` installs it")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"emrsim-{args.sessions}x{args.messages_per_session}.db"
    url = f"sqlite:///{db}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    if not db.exists():
        print(f"seeding {db} ...", file=sys.stderr)
        subprocess.run(
            emrops(
                "sim",
                "seed",
                "--db",
                url,
                "--sessions",
                str(args.sessions),
                "--messages-per-session",
                str(args.messages_per_session),
                "--seed",
                "7",
            ),
            check=True,
            env=env,
        )
        subprocess.run(
            ["sqlite3", str(db), "PRAGMA wal_checkpoint(TRUNCATE)"], check=True, capture_output=True
        )
    size = db.stat().st_size
    messages = int(
        subprocess.run(
            ["sqlite3", str(db), "SELECT count(*) FROM messages"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )

    store = work / "store"
    methods: set[str] = set()
    results: dict[str, list[float]] = {
        "run": [],
        "pipeline": [],
        "verify": [],
        "integrity": [],
        "run_core": [],
        "verify_core": [],
        "startup": [],
    }
    peak_kib = 0
    backup_size = 0
    for _ in range(args.repeat):
        shutil.rmtree(store, ignore_errors=True)
        for name in ("tmp.db", "tmp.db.zst"):
            (work / name).unlink(missing_ok=True)
        # the reference pipeline
        pipeline = (
            f'sqlite3 "{db}" ".backup {work}/tmp.db" && zstd -q -3 "{work}/tmp.db" '
            f'&& sha256sum "{work}/tmp.db.zst"'
        )
        seconds, _, _ = timed(pipeline, shell=True)
        results["pipeline"].append(seconds)
        # emrops backup run
        seconds, peak, out = timed(
            emrops("backup", "run", "--db", url, "--store", str(store), "--json"), env=env
        )
        results["run"].append(seconds)
        manifest = json.loads(out)["manifest"]
        results["run_core"].append(manifest["duration_s"])
        methods.add(manifest["engine_info"].get("snapshot", "?"))
        backup_size = manifest["files"][0]["size"]
        peak_kib = max(peak_kib, peak)
        # verify vs integrity_check
        seconds, _, _ = timed(["sqlite3", str(db), "PRAGMA integrity_check"])
        results["integrity"].append(seconds)
        seconds, peak, _ = timed(
            emrops("backup", "verify", manifest["id"], "--store", str(store)), env=env
        )
        results["verify"].append(seconds)
        record = json.loads((store / manifest["id"] / "verification.json").read_text())
        results["verify_core"].append(record["duration_s"])
        results["startup"].append(timed(emrops("--version"), env=env)[0])
        peak_kib = max(peak_kib, peak)
    med = {k: statistics.median(v) for k, v in results.items()}
    zst_size = (work / "tmp.db.zst").stat().st_size
    run_ratio = med["run"] / med["pipeline"]
    verify_ratio = med["verify"] / med["integrity"]
    peak_mb = peak_kib * 1024 / 1e6
    sqlite_version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True)
    lines = [
        START,
        "## Backups (`benchmarks/backup.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"SQLite {sqlite_version.stdout.split()[0]}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Database: {messages:,} messages, {size / 1e6:.0f} MB. Median of {args.repeat} runs "
        "(warm page cache). The `core` rows are the time inside emrops (the manifest's and the "
        "verification record's `duration_s`), without Python start-up and CLI imports "
        f"(`emrops --version` alone: {med['startup']:.2f} s). Snapshot method: "
        f"{', '.join(sorted(methods))} (`wal-image`: the pages of one read transaction streamed "
        "straight from the file and WAL into zstd on all cores, no scratch copy; see "
        "docs/backup.md).",
        "",
        "| measure | emrops | reference | ratio | target |",
        "|---|---|---|---|---|",
        f"| backup run, whole command | {med['run']:.2f} s | {med['pipeline']:.2f} s "
        f"(`sqlite3 .backup && zstd -3 && sha256sum`) | {run_ratio:.2f}x | <= 0.7x |",
        f"| backup run, core | {med['run_core']:.2f} s | {med['pipeline']:.2f} s | "
        f"{med['run_core'] / med['pipeline']:.2f}x | |",
        f"| verify, whole command | {med['verify']:.2f} s | {med['integrity']:.2f} s "
        f"(`PRAGMA integrity_check`) | {verify_ratio:.2f}x | <= 2.0x |",
        f"| verify, core | {med['verify_core']:.2f} s | {med['integrity']:.2f} s | "
        f"{med['verify_core'] / med['integrity']:.2f}x | |",
        f"| peak RSS of emrops processes | {peak_mb:.0f} MB | | | < 200 MB |",
        f"| backup size | {backup_size / 1e6:.1f} MB | {zst_size / 1e6:.1f} MB (zstd -3) | | |",
        "",
        END,
    ]
    block = "\n".join(lines)
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text)
    print(block)


if __name__ == "__main__":
    main()
