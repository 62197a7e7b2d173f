"""Hostile SQLite sources and restore targets not covered by test_torture.py (session 6).

Each case must end in a backup that restores to the source's content (verify exits 0) or a
clear error with a documented exit code; never a wrong backup that verifies.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from tests.backup.conftest import json_of, run_backup


def _wal_db(path: Path, value: str, rows: int = 500) -> sqlite3.Connection:
    """A WAL database whose rows are all still in the WAL (no checkpoint); left open so the
    -wal and -shm stay."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.commit()
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(value * 100,)] * rows)
    conn.commit()
    return conn


def _values(path: Path) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {row[0][:3] for row in conn.execute("SELECT v FROM t")}
    finally:
        conn.close()


def test_symlinked_wal_source_reads_the_wal_of_the_file_it_points_to(cli, tmp_path: Path) -> None:
    """SQLite names -wal/-shm after the symlink's target. Stale -wal/-shm of another database
    of the same size beside the link used to be read instead: the backup held the other
    database's rows, and verify passed (integrity and row counts both fine)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    other = _wal_db(tmp_path / "b" / "other.db", "o")
    for suffix in ("-wal", "-shm"):
        shutil.copy(tmp_path / "b" / f"other.db{suffix}", tmp_path / "a" / f"link.db{suffix}")
    real = _wal_db(tmp_path / "b" / "real.db", "r")
    link = tmp_path / "a" / "link.db"
    os.symlink("../b/real.db", link)
    store = tmp_path / "store"
    try:
        manifest = run_backup(cli, f"sqlite:///{link}", store)
        assert manifest["engine_info"]["snapshot"] == "wal-image"
        target = tmp_path / "restored.db"
        json_of(
            cli(
                "backup", "restore", manifest["id"], "--store", str(store),
                "--target", str(target), "--yes", "--json",
            )
        )  # fmt: skip
        assert _values(target) == {"rrr"}
    finally:
        other.close()
        real.close()
