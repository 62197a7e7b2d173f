"""Benchmark: the swap step of an SQLite restore, in place vs the shell tool, in the same run.

Builds a WAL-mode database of --mb MB (rows of random bytes), an image of it with other data
of the same size, then measures, each REPEAT times on a fresh copy of the target (median
wall time):

- in place: ``emrops.backup.sqlite_swap.restore_in_place`` (backup API, one transaction,
  then a TRUNCATE checkpoint)
- reference: ``sqlite3 TARGET ".restore IMAGE"`` (the same backup API, from the shell)
- rename: copy the image beside the target and rename it over (what restore did before; it
  leaves a running server on the deleted file, shown for scale only)

No target: the ratio in place / reference is reported. ``--write`` puts the figures into
docs/benchmarks.md between the ``restore-in-place`` markers.

Usage: .venv/bin/python benchmarks/restore_in_place.py [--work DIR] [--mb 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from emrops.backup.sqlite_swap import restore_in_place

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- restore-in-place:start -->", "<!-- restore-in-place:end -->"


def build(path: Path, mb: int, seed: int) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    rows = mb * 1024  # 1 KiB each
    conn.execute("BEGIN")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO blobs (body) SELECT randomblob(1000 + (i + ?) % 24) FROM n",
        (rows, seed),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def fresh(target: Path, original: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(original, target)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/emrops-bench-restore"))
    parser.add_argument("--mb", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    if not shutil.which("sqlite3"):
        raise SystemExit("sqlite3 is missing: `make tools` installs it")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    original, source = work / f"target-{args.mb}.db", work / f"image-{args.mb}.db"
    if not original.exists():
        build(original, args.mb, 1)
    if not source.exists():
        build(source, args.mb, 2)
    target, image = work / "target.db", work / "image.db"
    results: dict[str, list[float]] = {"in_place": [], "reference": [], "rename": []}
    for _ in range(args.repeat):
        fresh(target, original)
        shutil.copyfile(source, image)
        results["in_place"].append(timed(lambda: restore_in_place(image, target)))
        fresh(target, original)
        results["reference"].append(
            timed(
                lambda: subprocess.run(["sqlite3", str(target), f".restore '{source}'"], check=True)
            )
        )
        fresh(target, original)

        def rename() -> None:
            beside = work / ".target.db.tmp"
            shutil.copyfile(source, beside)
            with open(beside, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(beside, target)

        results["rename"].append(timed(rename))
    med = {k: statistics.median(v) for k, v in results.items()}
    sqlite_version = subprocess.run(["sqlite3", "--version"], capture_output=True, text=True)
    lines = [
        START,
        "## Restore in place (`benchmarks/restore_in_place.py`)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, SQLite {sqlite_version.stdout.split()[0]}; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. WAL-mode target and image of {args.mb} MB; "
        f"median of {args.repeat} runs.",
        "",
        "| measure | time | ratio to reference |",
        "|---|---|---|",
        f"| in place (emrops, backup API + TRUNCATE checkpoint) | {med['in_place']:.2f} s | "
        f"{med['in_place'] / med['reference']:.2f}x |",
        f"| reference: `sqlite3 TARGET .restore IMAGE` | {med['reference']:.2f} s | 1.00x |",
        f"| rename over the target (old way, for scale) | {med['rename']:.2f} s | "
        f"{med['rename'] / med['reference']:.2f}x |",
        "",
        END,
    ]
    block = "\n".join(lines)
    print(block)
    if args.write:
        text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
        if START in text and END in text:
            text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        DOC.write_text(text)


if __name__ == "__main__":
    main()
