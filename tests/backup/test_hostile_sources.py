"""Hostile SQLite sources and restore targets not covered by test_torture.py (session 6).

Each case must end in a backup that restores to the source's content (verify exits 0) or a
clear error with a documented exit code; never a wrong backup that verifies.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup.conftest import emrops_proc, json_of, run_backup, write_resealed


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


def _fk_source(path: Path) -> None:
    # foreign_keys is off by default in SQLite: any writer that does not turn it on can
    # leave a child row without its parent
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE p(id INTEGER PRIMARY KEY)")
    conn.execute("CREATE TABLE c(id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p(id))")
    conn.execute("INSERT INTO p VALUES (1)")
    conn.executemany("INSERT INTO c(pid) VALUES (?)", [(1,), (5,), (6,)])
    conn.commit()
    conn.close()


def test_source_with_foreign_key_violations_verifies_and_restores(cli, tmp_path: Path) -> None:
    """A faithful backup of a source that already had FK violations used to fail verify
    (exit 3) and restore refused it: that source could never be restored."""
    source = tmp_path / "fk.db"
    _fk_source(source)
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{source}", store)
    assert manifest["engine_info"]["foreign_key_violations"] == 2
    result = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert result.exit_code == 0, result.stderr
    assert "2 violation(s), as in the source" in result.stdout + result.stderr
    target = tmp_path / "restored.db"
    restored = cli(
        "backup", "restore", manifest["id"], "--store", str(store), "--target", str(target),
        "--yes",
    )  # fmt: skip
    assert restored.exit_code == 0, restored.stderr
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT pid FROM c ORDER BY id").fetchall() == [(1,), (5,), (6,)]
    conn.close()


def test_source_with_a_foreign_key_sqlite_cannot_check_backs_up_and_verifies(
    cli, tmp_path: Path
) -> None:
    """A foreign key naming a missing column makes PRAGMA foreign_key_check fail ("foreign
    key mismatch") on the source and on any faithful copy: the backup records that the keys
    cannot be checked, and verify passes (migrate-db's pre-migration backup of such a source
    had failed with "cannot snapshot")."""
    source = tmp_path / "mismatch.db"
    conn = sqlite3.connect(source)
    conn.executescript(
        "CREATE TABLE nokey (a INTEGER); "
        "CREATE TABLE c (id INTEGER PRIMARY KEY, r INTEGER REFERENCES nokey(zzz)); "
        "INSERT INTO nokey VALUES (1); INSERT INTO c VALUES (1, 1);"
    )
    conn.close()
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{source}", store)
    assert manifest["engine_info"]["foreign_key_violations"] is None
    result = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert result.exit_code == 0, result.stderr
    assert "not checkable, as in the source" in result.stdout + result.stderr


def test_foreign_key_violations_not_in_the_source_still_fail(cli, tmp_path: Path) -> None:
    """The count is compared: a backup whose manifest says fewer violations than the image
    holds fails the check (exit 3), as a manifest without the count (older backups) does."""
    source = tmp_path / "fk.db"
    _fk_source(source)
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{source}", store)
    path = store / manifest["id"] / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["engine_info"]["foreign_key_violations"]
    write_resealed(path, doc)
    result = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert result.exit_code == 3
    assert "foreign_key_check: 2 violation(s), the source had 0" in result.stderr


def test_rotate_keeps_real_backups_beside_one_dated_in_the_future(cli, tmp_path: Path) -> None:
    """A verified backup dated in the future (a writer with a wrong clock) used to be the
    "newest verified" and take the --keep-last slot: rotate --keep-last 1 deleted the real
    newest backup and kept only the skewed one."""
    source = tmp_path / "src.db"
    _fk_source(source)
    store = tmp_path / "store"
    real = run_backup(cli, f"sqlite:///{source}", store)
    skewed = run_backup(cli, f"sqlite:///{source}", store)
    path = store / skewed["id"] / "manifest.json"
    write_resealed(path, {**json.loads(path.read_text()), "created_at": "2999-01-01T00:00:00.000Z"})
    assert cli("backup", "verify", "--all", "--store", str(store)).exit_code == 0
    result = json_of(cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json"))
    assert result["deleted"] == []
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == sorted(
        [real["id"], skewed["id"]]
    )


def test_store_that_is_a_dangling_link_or_a_loop_is_named_as_such(cli, tmp_path: Path) -> None:
    """A store path that is a symlink to an unmounted folder, or a loop, was reported as "a
    file, not a folder"; nothing is created through the link."""
    source = tmp_path / "src.db"
    _fk_source(source)
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "gone").symlink_to(tmp_path / "mnt" / "nas")
    for store in ("loop1", "gone"):
        result = cli(
            "backup", "run", "--db", f"sqlite:///{source}", "--store", str(tmp_path / store)
        )
        assert result.exit_code == 2, result.stderr
        assert "is a symbolic link to" in result.stderr
        assert "leads to no folder" in result.stderr
    assert not (tmp_path / "mnt").exists()


def test_backup_of_a_database_with_no_tables_warns(cli, tmp_path: Path) -> None:
    """A WAL database whose -wal was deleted (every table was in it) is an empty database:
    the backup is faithful and verifies, so it is published, but it says so on stderr."""
    conn = _wal_db(tmp_path / "w.db", "w")
    shutil.copy(tmp_path / "w.db", tmp_path / "lost.db")
    shutil.copy(tmp_path / "w.db-shm", tmp_path / "lost.db-shm")
    conn.close()
    result = cli(
        "backup", "run", "--db", f"sqlite:///{tmp_path / 'lost.db'}",
        "--store", str(tmp_path / "store"),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "holds a database with no tables" in result.stderr


@pytest.mark.slow
def test_source_locked_past_the_timeout_is_a_clear_error(tmp_path: Path) -> None:
    """A source another process keeps EXCLUSIVE-locked: exit 1 naming the lock, with a hint
    (it was the bare SQLite text "database is locked"); nothing published."""
    source = tmp_path / "ex.db"
    _fk_source(source)
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(source)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); c.execute('DELETE FROM c')\n"
            "print('locked', flush=True); time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        store = tmp_path / "store"
        result = emrops_proc("backup", "run", "--db", f"sqlite:///{source}", "--store", str(store))
        assert result.returncode == 1, result.stderr
        assert "stayed locked by another process" in result.stderr
        assert "Try: find the process with `fuser" in result.stderr
        assert "Traceback" not in result.stderr
        assert [p.name for p in store.iterdir()] == [".lock"]
    finally:
        holder.kill()
        holder.wait()
