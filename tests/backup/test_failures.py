"""Damaged backups (exit 3), locks (exit 75, stale takeover) and bad input (clear errors)."""

from __future__ import annotations

import json
import os
import resource
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emrops.backup.lock import local_lock
from tests.backup.conftest import emrops_proc, listed, run_backup, write_resealed
from tests.conftest import free_port


@pytest.fixture
def backup(cli, seeded_sqlite: str, store: Path) -> str:
    return run_backup(cli, seeded_sqlite, store)["id"]


def data_file(store: Path, backup_id: str) -> Path:
    return store / backup_id / "database.sqlite.zst"


def verify(cli, store: Path, backup_id: str):  # type: ignore[no-untyped-def]
    return cli("backup", "verify", backup_id, "--store", str(store))


def test_flipped_byte_fails_verify_with_exit_3(cli, store: Path, backup: str) -> None:
    path = data_file(store, backup)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = verify(cli, store, backup)
    assert result.exit_code == 3
    assert (
        f"Error: verification failed for {backup}: checksum database.sqlite.zst: stored"
        in result.stderr
    )
    recorded = json.loads((store / backup / "verification.json").read_text())
    assert recorded["ok"] is False
    assert listed(cli, store)[0]["verified"] == "failed"
    as_json = cli("backup", "verify", backup, "--store", str(store), "--json")
    assert as_json.exit_code == 3 and json.loads(as_json.stdout)[0]["ok"] is False


def test_truncated_and_missing_data_fail_verify(cli, store: Path, backup: str) -> None:
    path = data_file(store, backup)
    path.write_bytes(path.read_bytes()[:100])
    result = verify(cli, store, backup)
    assert (
        result.exit_code == 3 and "checksum database.sqlite.zst: stored 100 bytes" in result.stderr
    )
    path.unlink()
    result = verify(cli, store, backup)
    assert result.exit_code == 3
    assert "database.sqlite.zst is missing from the store" in result.stderr


def test_row_count_mismatch_fails_verify(cli, store: Path, backup: str) -> None:
    path = store / backup / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["row_counts"]["messages"] += 1
    write_resealed(path, manifest)
    result = verify(cli, store, backup)
    assert result.exit_code == 3 and "row counts: messages: 200 (manifest 201)" in result.stderr


def test_backup_without_manifest_does_not_exist(cli, store: Path, backup: str) -> None:
    (store / backup / "manifest.json").unlink()
    assert listed(cli, store) == []
    result = verify(cli, store, backup)
    assert result.exit_code == 1 and f"Error: backup {backup} not found in" in result.stderr
    restore = cli("backup", "restore", backup, "--target", "x.db", "--store", str(store), "--yes")
    assert restore.exit_code == 1 and "not found" in restore.stderr


def test_second_run_exits_75_naming_the_holder(
    cli, seeded_sqlite: str, store: Path, backup: str
) -> None:
    with local_lock(store, "test holder"):
        commands = [
            ("backup", "run", "--db", seeded_sqlite),
            ("backup", "verify", backup),
            ("backup", "rotate", "--keep-last", "1"),
            ("backup", "pin", backup),
            ("backup", "restore", backup, "--target", "new.db", "--yes"),
            ("backup", "copy", backup, "--to", "elsewhere"),
        ]
        for args in commands:
            result = cli(*args, "--store", str(store))
            assert result.exit_code == 75, (args, result.stderr)
            expected = (
                f"is locked: test holder by pid {os.getpid()} on {socket.gethostname()} since"
            )
            assert expected in result.stderr
    assert cli("backup", "list", "--store", str(store)).exit_code == 0  # list takes no lock
    assert len(listed(cli, store)) == 1


def test_stale_lock_is_taken_over_with_a_warning(
    cli, seeded_sqlite: str, store: Path, backup: str
) -> None:
    holder = {
        "host": "old-host",
        "pid": 999999,
        "operation": "backup run",
        "since": "2026-01-01T00:00:00Z",
    }
    (store / ".lock").write_text(json.dumps(holder))
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store))
    assert result.exit_code == 0
    assert "taking over a stale lock" in result.stderr and "pid 999999 on old-host" in result.stderr
    assert (store / ".lock").read_text() == ""  # released cleanly


def test_store_that_is_a_file(cli, seeded_sqlite: str, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", str(tmp_path / "afile"))
    assert result.exit_code == 2
    assert f"Error: backup store {tmp_path / 'afile'} is a file, not a folder" in result.stderr


def test_non_database_and_missing_db(cli, store: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello, not a database\n" * 50)
    result = cli(
        "backup", "run", "--db", f"sqlite:///{tmp_path / 'notes.txt'}", "--store", str(store)
    )
    assert result.exit_code == 2
    assert f"Error: {tmp_path / 'notes.txt'} is not an SQLite database" in result.stderr
    missing = cli(
        "backup", "run", "--db", f"sqlite:///{tmp_path / 'nope.db'}", "--store", str(store)
    )
    assert missing.exit_code == 2 and "database file not found" in missing.stderr
    assert listed(cli, store) == []


def test_unreachable_postgres(cli, store: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/emrsim"
    result = cli("backup", "run", "--db", url, "--store", str(store))
    assert result.exit_code == 1
    assert "Error: database error on postgresql+psycopg://postgres@127.0.0.1:" in result.stderr
    assert "Try: check that PostgreSQL is running" in result.stderr
    assert listed(cli, store) == []


def _limit(size: int):  # type: ignore[no-untyped-def]
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return apply


def test_disk_full_while_writing_a_sqlite_backup(cli, tmp_path: Path, store: Path) -> None:
    db = tmp_path / "noise.db"
    with sqlite3.connect(db) as conn:  # incompressible, so the backup outgrows the limit
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE noise (id INTEGER PRIMARY KEY, data BLOB)")
        conn.executemany(
            "INSERT INTO noise (data) VALUES (?)", [(os.urandom(4000),) for _ in range(50)]
        )
    url = f"sqlite:///{db}"
    proc = emrops_proc(
        "backup",
        "run",
        "--db",
        url,
        "--store",
        str(store),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        preexec=_limit(100_000),
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        f"Error: backup store {store} is full: File too large; nothing was published" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert listed(cli, store) == []
    assert [p for p in store.iterdir() if p.name != ".lock"] == []
    assert run_backup(cli, url, store)["row_counts"] == {"noise": 50}


def test_disk_full_in_the_backup_api_snapshot(seeded_sqlite: str, tmp_path: Path) -> None:
    """The fallback (online backup API into a scratch file) names the full scratch folder."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    path = seeded_sqlite.removeprefix("sqlite:///")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from emrops.backup.snapshot import sqlite_snapshot\n"
        "from emrops.errors import EmropsError\n"
        "try:\n"
        f"    with sqlite_snapshot(Path({path!r}), Path({str(scratch)!r}), live=False):\n"
        "        pass\n"
        "except EmropsError as exc:\n"
        "    print(exc.message, exc.hint)\n"
        "    sys.exit(1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        preexec_fn=_limit(20_000),
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert f"cannot snapshot {path} into {scratch}" in proc.stdout
    assert "(is the disk full?)" in proc.stdout and "set TMPDIR" in proc.stdout
    assert list(scratch.iterdir()) == []


def test_disk_full_while_writing_the_store(cli, seeded_pg: str, store: Path) -> None:
    proc = emrops_proc(
        "backup",
        "run",
        "--db",
        seeded_pg,
        "--store",
        str(store),
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        preexec=_limit(8_000),
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        f"Error: backup store {store} is full: File too large; nothing was published" in proc.stderr
    )
    assert listed(cli, store) == []
    assert [p for p in store.iterdir() if p.name != ".lock"] == []
    # with room again, the next run works
    assert run_backup(cli, seeded_pg, store)["engine"] == "postgresql"


def test_copy_refuses_a_damaged_source(cli, store: Path, backup: str, tmp_path: Path) -> None:
    path = data_file(store, backup)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x10
    path.write_bytes(bytes(data))
    other = tmp_path / "second"
    result = cli("backup", "copy", backup, "--to", str(other), "--store", str(store))
    assert result.exit_code == 3
    assert "does not match its manifest (size/SHA-256): not copied" in result.stderr
    assert listed(cli, other) == [] and not (other / backup).exists()
