"""Hostile SQLite files and restore targets, campaign 8 (see docs/backup.md, "Hostile inputs
tried, session 8"). Every file is built at test time.

Each case ends in a backup that restores to the source's content (verify exits 0), or a clear
``Error:`` with a documented exit code, nothing published and the target unchanged; never a
wrong backup that verifies, nor a restore that loses the data it replaces.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.backup.conftest import json_of, run_backup


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _rows(path: Path, table: str = "t") -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute(f'SELECT * FROM "{table}" ORDER BY rowid').fetchall()
    finally:
        conn.close()


def _small_db(path: Path, rows: int = 3, value: str = "v") -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"{value}{i}",) for i in range(rows)])
    conn.commit()
    conn.close()
    return path


def _hot_journal_db(path: Path) -> list[tuple[object, ...]]:
    """A rollback-journal database left by a writer killed mid-transaction after it spilled
    changed pages into the file: the file alone is torn, the file with its ``-journal`` is the
    last committed state. Returns that state's rows."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = DELETE").fetchall()
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [(f"row{i}" * 20,) for i in range(2000)])
    conn.commit()
    committed = conn.execute("SELECT * FROM t ORDER BY rowid").fetchall()
    conn.close()
    crash = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA cache_size = 1')\n"  # spill into the file before any commit
        "c.execute('BEGIN')\n"
        "c.execute(\"UPDATE t SET v = 'TORN' || v\")\n"
        "c.execute('DELETE FROM t WHERE id > 1000')\n"
        "os._exit(9)\n"
    )
    subprocess.run([sys.executable, "-c", crash, str(path)], check=False)
    journal = Path(f"{path}-journal")
    assert journal.stat().st_size > 0
    return committed


def test_restore_onto_a_target_with_a_hot_journal_never_drops_the_journal(
    cli, tmp_path: Path
) -> None:
    """A target whose writer crashed mid-transaction (a hot ``-journal``) was taken for "not a
    readable SQLite database": ``restore --force`` moved the file aside and deleted its
    journal, so the moved file kept the torn pages ("database disk image is malformed") and
    the target's last committed data, of which no safety backup was taken, was gone. Now the
    restore refuses (exit 1, nothing changed) with the way out, and after SQLite has rolled the
    journal back the restore takes a safety backup holding every committed row."""
    store = tmp_path / "store"
    backup_id = run_backup(cli, _url(_small_db(tmp_path / "src.db")), store)["id"]
    target = tmp_path / "app.db"
    committed = _hot_journal_db(target)
    journal = Path(f"{target}-journal")
    before = (target.read_bytes(), journal.read_bytes())

    for extra in ((), ("--dry-run",)):
        refused = cli(
            "backup", "restore", backup_id, "--target", str(target), "--force", "--yes",
            "--store", str(store), *extra,
        )  # fmt: skip
        assert refused.exit_code == 1, (refused.stdout, refused.stderr)
        text = " ".join(refused.stderr.split())
        assert "hot journal" in text and "nothing was changed" in text
        assert "PRAGMA quick_check" in text  # the way out
        assert "Traceback" not in refused.stderr
    assert (target.read_bytes(), journal.read_bytes()) == before
    assert not list(tmp_path.glob("app.db.before-restore-*"))

    # the way out the hint gives: SQLite rolls the journal back on a read-write open
    subprocess.run(["sqlite3", str(target), "PRAGMA quick_check"], check=True, capture_output=True)
    assert _rows(target) == committed
    done = json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(target),
            "--force",
            "--yes",
            "--store",
            str(store),
            "--json",
        )  # fmt: skip
    )
    assert done["moved_aside"] is None and done["safety_backup_id"]
    assert _rows(target) == _rows(tmp_path / "src.db")
    safety = tmp_path / "safety.db"
    json_of(
        cli(
            "backup",
            "restore",
            done["safety_backup_id"],
            "--target",
            str(safety),
            "--yes",
            "--store",
            str(store),
            "--json",
        )  # fmt: skip
    )
    assert _rows(safety) == committed


def test_an_unreadable_target_is_moved_aside_with_its_journal_and_wal(cli, tmp_path: Path) -> None:
    """A target moved aside (not readable as a database) keeps its ``-journal`` and ``-wal``
    beside the moved file (they may hold the rest of its data: salvage needs them); they were
    deleted. Nothing stale is left beside the restored file."""
    store = tmp_path / "store"
    backup_id = run_backup(cli, _url(_small_db(tmp_path / "src.db")), store)["id"]
    target = tmp_path / "app.db"
    target.write_bytes(b"\x00" * 4096)  # a header wiped by something
    for suffix, data in (("-journal", b"J" * 512), ("-wal", b"W" * 512)):
        Path(f"{target}{suffix}").write_bytes(data)
    done = json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(target),
            "--force",
            "--yes",
            "--store",
            str(store),
            "--json",
        )  # fmt: skip
    )
    aside = Path(done["moved_aside"])
    assert aside.read_bytes() == b"\x00" * 4096
    assert Path(f"{aside}-journal").read_bytes() == b"J" * 512
    assert Path(f"{aside}-wal").read_bytes() == b"W" * 512
    assert not Path(f"{target}-journal").exists() and not Path(f"{target}-wal").exists()
    assert _rows(target) == _rows(tmp_path / "src.db")
    assert json.loads(json.dumps(done))["verification"]["ok"] is True
    assert os.stat(target).st_size > 0


def _utf16_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [("héllo",), ("wörld",)])
    conn.commit()
    conn.close()
    return path


def test_restore_in_place_refuses_another_text_encoding(cli, tmp_path: Path) -> None:
    """SQLite cannot change a database's text encoding under the connections that have it open:
    after an in-place restore of a UTF-16 backup onto a UTF-8 target every query of a running
    app failed ("attached databases must use the same text encoding as main database") until
    it was restarted, while restore exited 0 promising "no restart needed". Now restore refuses
    (exit 1, before maintenance or a safety backup: nothing changed, nothing published); a new
    target gets the backup's encoding."""
    store = tmp_path / "store"
    source = _utf16_db(tmp_path / "src16.db")
    backup_id = run_backup(cli, _url(source), store)["id"]
    target = _small_db(tmp_path / "app.db", value="x")
    held = sqlite3.connect(target)  # a running app
    try:
        assert held.execute("SELECT count(*) FROM t").fetchone() == (3,)
        before = target.read_bytes()
        for extra in (("--dry-run",), ()):
            refused = cli(
                "backup", "restore", backup_id, "--target", str(target), "--force", "--yes",
                "--store", str(store), *extra,
            )  # fmt: skip
            assert refused.exit_code == 1, (refused.stdout, refused.stderr)
            text = " ".join(refused.stderr.split())
            assert "UTF-16le" in text and "UTF-8" in text and "nothing was changed" in text
            assert "Traceback" not in refused.stderr
        assert target.read_bytes() == before
        assert held.execute("SELECT count(*) FROM t").fetchone() == (3,)
        assert len(os.listdir(store)) == 2  # .lock and the one backup: no safety backup
    finally:
        held.close()
    fresh = tmp_path / "new.db"
    json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(fresh),
            "--yes",
            "--store",
            str(store),
            "--json",
        )  # fmt: skip
    )
    assert _rows(fresh) == _rows(source) == [(1, "héllo"), (2, "wörld")]
