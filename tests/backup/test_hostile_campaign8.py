"""Hostile SQLite files and restore targets, campaign 8 (see docs/backup.md, "Hostile inputs
tried, session 8"). Every file is built at test time.

Each case ends in a backup that restores to the source's content (verify exits 0), or a clear
``Error:`` with a documented exit code, nothing published and the target unchanged; never a
wrong backup that verifies, nor a restore that loses the data it replaces.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup.conftest import json_of, restore_new, run_backup, write_resealed


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
    restore_new(cli, str(store), done["safety_backup_id"], str(safety))
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
    restore_new(cli, str(store), backup_id, str(fresh))
    assert _rows(fresh) == _rows(source) == [(1, "héllo"), (2, "wörld")]


def _content(path: Path) -> tuple[object, ...]:
    """Schema, every table's rows (by rowid), and the header fields a restore must keep."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        schema = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        tables = [r[1] for r in schema if r[0] == "table"]
        rows = {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}
        pragmas = tuple(
            conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("encoding", "user_version", "application_id", "page_size")
        )
        return schema, rows, pragmas
    finally:
        conn.close()


def _shape(path: Path, shape: str) -> sqlite3.Connection | None:
    """Build one source shape at ``path``; returns a connection to keep open (WAL shapes)."""
    if shape == "utf16be-wal":
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA encoding = 'UTF-16be'")
        conn.execute("PRAGMA journal_mode = WAL").fetchall()
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute("CREATE TABLE t(a TEXT, b BLOB)")
        rows = [("ü" * i, b"\0\xff" * i) for i in range(300)]
        conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
        conn.execute("PRAGMA application_id = 1234567")
        conn.execute("PRAGMA user_version = 77")
        conn.commit()
        return conn
    if shape == "reserve32-page512-wal":
        # reserved bytes per page, as a checksum or encryption VFS leaves them
        subprocess.run(
            ["sqlite3", str(path), "PRAGMA page_size = 512", ".filectrl reserve_bytes 32",
             "VACUUM", "PRAGMA journal_mode = WAL", "CREATE TABLE t(a)"],
            check=True, capture_output=True,
        )  # fmt: skip
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.executemany("INSERT INTO t VALUES (?)", [("y" * (i % 300),) for i in range(1500)])
        conn.commit()
        assert path.read_bytes()[20] == 32 and conn.execute("PRAGMA page_size").fetchone() == (512,)
        return conn
    conn = sqlite3.connect(path)
    if shape == "2000-columns":
        conn.execute(f"CREATE TABLE w({', '.join(f'c{i}' for i in range(2000))})")
        conn.execute(f"INSERT INTO w VALUES ({', '.join(['?'] * 2000)})", list(range(2000)))
    elif shape == "schema-only":
        conn.executescript(
            "CREATE TABLE a(x); CREATE INDEX ia ON a(x); CREATE VIEW v AS SELECT * FROM a;"
            "CREATE TRIGGER tr AFTER INSERT ON a BEGIN SELECT 1; END;"
        )
    elif shape == "trailing-bytes":
        conn.execute("CREATE TABLE t(a)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
        conn.commit()
        conn.close()
        with open(path, "ab") as handle:  # not a whole page: the header's count decides
            handle.write(b"GARBAGE" * 20)
        return None
    conn.commit()
    conn.close()
    return None


@pytest.mark.parametrize(
    "shape",
    ["utf16be-wal", "reserve32-page512-wal", "2000-columns", "schema-only", "trailing-bytes"],
)
def test_source_shapes_back_up_verify_and_restore_equal(cli, tmp_path: Path, shape: str) -> None:
    """Shapes held in campaign 8: the backup verifies and a restore into a new file has the
    source's schema, rows (by rowid), encoding, user_version, application_id and page size."""
    source = tmp_path / "src.db"
    held = _shape(source, shape)
    try:
        store = tmp_path / "store"
        manifest = run_backup(cli, _url(source), store, "--verify")
        restored = tmp_path / "restored.db"
        restore_new(cli, str(store), manifest["id"], str(restored))
        assert _content(restored) == _content(source)
    finally:
        if held is not None:
            held.close()


def test_wal_tail_of_a_killed_writer_is_not_in_the_backup(cli, tmp_path: Path) -> None:
    """A writer killed mid-transaction after spilling frames into the WAL: the frames after
    the last commit are not part of the database, nor of its backup."""
    source = tmp_path / "src.db"
    held = _shape(source, "utf16be-wal")
    assert held is not None
    try:
        committed = _content(source)
        crash = (
            "import os, sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA cache_size = 1'); c.execute('BEGIN')\n"
            "c.execute(\"UPDATE t SET a = 'TORN'\"); os._exit(9)\n"
        )
        size = Path(f"{source}-wal").stat().st_size
        subprocess.run([sys.executable, "-c", crash, str(source)], check=False)
        assert Path(f"{source}-wal").stat().st_size > size  # the torn frames are there
        store = tmp_path / "store"
        manifest = run_backup(cli, _url(source), store, "--verify")
        restored = tmp_path / "restored.db"
        restore_new(cli, str(store), manifest["id"], str(restored))
        assert _content(restored) == committed
    finally:
        held.close()


def test_reserved_bytes_image_restored_in_place_under_an_open_wal_connection(
    cli, tmp_path: Path
) -> None:
    """An image with 32 reserved bytes in 512-byte pages copied in place into a WAL target
    with 4096-byte pages and none: the image is rewritten at the target's page size (keeping
    its reserve), and a connection that stays open reads the restored rows, integrity ok."""
    source = tmp_path / "src.db"
    _shape(source, "reserve32-page512-wal")
    store = tmp_path / "store"
    backup_id = run_backup(cli, _url(source), store)["id"]
    target = tmp_path / "app.db"
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("CREATE TABLE t(a)")
    conn.execute("INSERT INTO t VALUES ('old')")
    conn.commit()
    try:
        json_of(
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
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1500,)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    assert _rows(target) == _rows(source)
    assert target.read_bytes()[20] == 32  # the reserve travels with the pages


def test_a_payload_swapped_for_another_valid_database_fails_verify(cli, tmp_path: Path) -> None:
    """A writer to the store replaces the data file by another valid, well-compressed database
    and reseals the manifest with its size and SHA-256 (so checksum and seal pass): the row
    counts the manifest recorded at backup time still tell (exit 3), and restore refuses."""
    store = tmp_path / "store"
    real = run_backup(cli, _url(_small_db(tmp_path / "a.db", rows=5)), store)
    other = run_backup(cli, _url(_small_db(tmp_path / "b.db", rows=4, value="evil")), store)
    [item] = real["files"]
    payload = (store / other["id"] / item["name"]).read_bytes()
    (store / real["id"] / item["name"]).write_bytes(payload)
    doc = json.loads((store / real["id"] / "manifest.json").read_text())
    [entry] = doc["files"]
    entry["size"] = len(payload)
    entry["sha256"] = hashlib.sha256(payload).hexdigest()
    entry["raw_size"] = other["files"][0]["raw_size"]
    write_resealed(store / real["id"] / "manifest.json", doc)
    result = cli("backup", "verify", real["id"], "--store", str(store))
    assert result.exit_code == 3, (result.stdout, result.stderr)
    text = " ".join(result.stderr.split())
    assert "row counts: t: 4 (manifest 5)" in text
    restore = cli(
        "backup", "restore", real["id"], "--target", str(tmp_path / "new.db"), "--yes",
        "--store", str(store),
    )  # fmt: skip
    assert restore.exit_code == 3 and not (tmp_path / "new.db").exists()


def test_an_image_whose_reserve_does_not_fit_the_wal_targets_page_size_is_a_clear_error(
    cli, tmp_path: Path
) -> None:
    """SQLite will not put more than 32 reserved bytes in a 512-byte page (it makes the page
    1024 bytes instead), so such an image cannot be rewritten at a WAL target's 512-byte page
    size and SQLite refuses the copy. The error was "attempt to write a readonly database";
    now it names the cause and the way out (exit 1, target unchanged, maintenance back)."""
    source = tmp_path / "src.db"
    subprocess.run(
        ["sqlite3", str(source), "PRAGMA page_size = 512", ".filectrl reserve_bytes 40",
         "VACUUM", "CREATE TABLE t(a)", "INSERT INTO t VALUES ('restored')"],
        check=True, capture_output=True,
    )  # fmt: skip
    store = tmp_path / "store"
    backup_id = run_backup(cli, _url(source), store)["id"]
    target = tmp_path / "app.db"
    conn = sqlite3.connect(target)
    conn.execute("PRAGMA page_size = 512")
    conn.execute("PRAGMA journal_mode = WAL").fetchall()
    conn.execute("CREATE TABLE t(a)")
    conn.execute("INSERT INTO t VALUES ('old')")
    conn.commit()
    conn.close()
    result = cli(
        "backup", "restore", backup_id, "--target", str(target), "--force", "--yes",
        "--store", str(store),
    )  # fmt: skip
    assert result.exit_code == 1, (result.stdout, result.stderr)
    text = " ".join(result.stderr.split())
    assert "40 reserved bytes" in text and "512-byte pages" in text, text
    assert "readonly" not in text and "Traceback" not in text
    assert "--target" in text  # the way out: a new file
    assert _rows(target) == [("old",)]
