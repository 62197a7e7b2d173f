"""The one SQLite open helper opens exactly the named file and never creates one when reading."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emrops.db.sqlite_file import (
    HotJournal,
    MissingDatabase,
    header_page_count,
    open_sqlite,
    sqlite_uri,
)

HOSTILE = ["a#b", "q?mode=rwc", "p%41%", "sp ace", "quo'te\"", "new\nline", "ünï©", "semi;colon"]


def _make(path: Path, rows: int) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(rows)])
    conn.commit()
    conn.close()


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_folder_names_open_the_named_file(tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir()
    path = folder / f"{name}.db"
    _make(path, 7)
    before = _tree(tmp_path)
    for mode in ("ro", "rw"):
        conn = open_sqlite(path, mode=mode)  # type: ignore[arg-type]
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 7
        conn.close()
    assert _tree(tmp_path) == before  # nothing created beside or above the named file


@pytest.mark.parametrize("mode", ["ro", "rw"])
def test_reads_never_create(tmp_path: Path, mode: str) -> None:
    missing = tmp_path / "a#b" / "app.db"
    with pytest.raises(MissingDatabase, match="not found"):
        open_sqlite(missing, mode=mode)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_rwc_creates_exactly_the_named_file(tmp_path: Path) -> None:
    (tmp_path / "x#y").mkdir()
    target = tmp_path / "x#y" / "new?.db"
    conn = open_sqlite(target, mode="rwc")
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    assert target.exists()
    assert _tree(tmp_path) == {"x#y", "x#y/new?.db"}


def test_symlink_opens_its_target(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    _make(real, 3)
    link = tmp_path / "li#nk.db"
    link.symlink_to(real)
    conn = open_sqlite(link)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3
    conn.close()


def test_uri_escapes_every_special_character(tmp_path: Path) -> None:
    uri = sqlite_uri(tmp_path / "a#b?c%d e.db", immutable="1")
    assert "#" not in uri and uri.count("?") == 1
    assert uri.endswith("?mode=ro&immutable=1")


def test_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MissingDatabase, match="folder"):
        open_sqlite(tmp_path)


def test_not_a_database_is_a_database_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"hello world" * 100)
    conn = open_sqlite(junk)
    with pytest.raises(sqlite3.DatabaseError):
        conn.execute("SELECT * FROM sqlite_master").fetchall()
    conn.close()


def test_header_page_count(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    _make(path, 5000)
    conn = sqlite3.connect(path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    assert header_page_count(path) == pages
    short = tmp_path / "short.db"
    short.write_bytes(b"SQLite format 3\x00")
    assert header_page_count(short) is None


HOT_WRITER = """
import os, signal, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=DELETE")
conn.execute("CREATE TABLE t(x)")
conn.execute("INSERT INTO t SELECT randomblob(900) FROM (WITH RECURSIVE n(i) AS "
             "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600) SELECT i FROM n)")
conn.execute("PRAGMA cache_size=5")  # the update spills into the file before commit
conn.execute("BEGIN")
conn.execute("UPDATE t SET x = randomblob(900)")
os.kill(os.getpid(), signal.SIGKILL)
"""


def make_hot_journal(path: Path) -> None:
    """A database whose writer was SIGKILLed mid-transaction: the file holds uncommitted pages
    and its -journal is hot (SQLite must roll it back before any read)."""
    proc = subprocess.run([sys.executable, "-c", HOT_WRITER, str(path)], check=False)
    assert proc.returncode == -signal.SIGKILL
    assert Path(f"{path}-journal").stat().st_size > 0


def test_hot_journal_is_a_clear_error_and_nothing_is_changed(tmp_path: Path) -> None:
    """Detected by asking SQLite (works as root, where os.access says every folder is
    writable; a read-only mount fails the same way, since a read-only open never writes)."""
    path = tmp_path / "app#1.db"
    make_hot_journal(path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(HotJournal, match="hot journal") as caught:
        open_sqlite(path)
    assert "never delete app#1.db-journal" in (caught.value.hint or "")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # source untouched
    # read-write, SQLite rolls the journal back, and then a read-only open works
    conn = open_sqlite(path, mode="rw")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 600
    conn.close()
    open_sqlite(path).close()


def test_hot_journal_through_backup_run(cli, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    make_hot_journal(path)
    result = cli("backup", "run", "--db", f"sqlite:///{path}", "--store", str(tmp_path / "s"))
    assert result.exit_code == 1, result.stderr
    assert "hot journal" in result.stderr and "never delete" in result.stderr
    assert Path(f"{path}-journal").exists()


@pytest.mark.parametrize("name", HOSTILE)
def test_engines_open_exactly_the_named_file(tmp_path: Path, name: str) -> None:
    """SQLAlchemy's own URL handling cuts a path at ``?``; engines connect through open_sqlite
    and URLs built from paths are escaped (sqlite_db_url)."""
    from emrops.db.engine import create_engine
    from emrops.db.urls import sqlite_db_url

    folder = tmp_path / name
    folder.mkdir()
    path = folder / f"{name}.db"
    with pytest.raises(MissingDatabase):
        create_engine(sqlite_db_url(path), create=False).connect()
    with pytest.raises(MissingDatabase):
        create_engine(sqlite_db_url(path), readonly=True)
    assert _tree(tmp_path) == {name}
    engine = create_engine(sqlite_db_url(path))  # writable engines may create
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t(x)")
        conn.exec_driver_sql("INSERT INTO t VALUES (1), (2)")
    engine.dispose()
    assert {p for p in _tree(tmp_path) if not p.endswith(("-wal", "-shm"))} == {
        name,
        f"{name}/{name}.db",
    }
    reader = create_engine(sqlite_db_url(path), readonly=True)
    with reader.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 2
    reader.dispose()


def _on_read_only_mount(folder: Path, script: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (sh) with ``folder`` bind-mounted read-only at ``folder/../ro``, inside a
    private mount namespace (nothing changes outside this one process tree)."""
    ro = folder.parent / "ro"
    ro.mkdir()
    setup = f"mount --bind '{folder}' '{ro}' && mount -o remount,ro,bind '{ro}' && "
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", setup + "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.decode().strip()}")
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", setup + script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("case", ["hot-journal", "wal-without-shm"])
def test_read_only_mount_gives_a_clear_error(tmp_path: Path, case: str) -> None:
    """The issue's case: a source on a read-only mount (real, as root: a bind mount remounted
    read-only in a private mount namespace) that SQLite cannot read without writing."""
    src = tmp_path / "src"
    src.mkdir()
    if case == "hot-journal":
        make_hot_journal(src / "app.db")
    else:
        _make(src / "app.db", 3)
        conn = sqlite3.connect(src / "app.db")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.close()  # the last connection removes -wal and -shm
    ro_db = tmp_path / "ro" / "app.db"
    store = tmp_path / "store"
    result = _on_read_only_mount(
        src,
        f"'{sys.executable}' -m emrops backup run --db 'sqlite:///{ro_db}' --store '{store}'",
    )
    assert result.returncode == 1, result.stderr
    text = " ".join(result.stderr.split())
    if case == "hot-journal":
        assert "hot journal" in text and "never delete app.db-journal" in text
    else:
        assert "cannot read the WAL database" in text and "-shm" in text
    assert sorted(p.name for p in src.iterdir())[0] == "app.db"
