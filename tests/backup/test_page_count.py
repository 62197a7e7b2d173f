"""An image whose page count is not the named file's is refused (issue #15 item 1).

The named file's page count comes from its header in rollback-journal mode, and from the newest
commit frame of the WAL in our snapshot in WAL mode (the main file's header is stale while the
WAL holds pages it has not been checkpointed into). Both snapshot paths (the direct image and
the backup API) are checked in both journal modes, with a WAL that grew the database past the
main file's header; and the refusal is proved by reintroducing the old bug at the open: a
handle on another file than the one named.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from emrops.backup import snapshot, walimage
from emrops.backup.snapshot import sqlite_snapshot
from emrops.backup.walimage import PageCountMismatch
from emrops.db.sqlite_file import header_page_count, open_sqlite
from emrops.errors import DatabaseError


def make(path: Path, mode: str, rows: int = 300) -> sqlite3.Connection:
    """A database in ``mode``; returned connection stays open (keeps a WAL from being folded)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO t(body) VALUES ('seed')")
    if mode == "wal":
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the main file: 2 pages
    conn.executemany("INSERT INTO t(body) VALUES (?)", [("x" * 500,) for _ in range(rows)])
    return conn


def image_of(path: Path, live: bool) -> tuple[bytes, dict[str, int]]:
    with sqlite_snapshot(path, path.parent, live=live) as snap:
        assert snap.stream is not None
        data = snap.stream.read()
        while chunk := snap.stream.read():
            data += chunk
        return data, snap.row_counts


@pytest.mark.parametrize("live", [True, False], ids=["wal-image", "backup-api"])
def test_wal_grown_past_the_stale_main_header(tmp_path: Path, live: bool) -> None:
    path = tmp_path / "app.db"
    writer = make(path, "wal")
    try:
        stale = header_page_count(path)
        assert stale is not None and stale <= 3  # the main file has not seen the new pages
        handle = open_sqlite(path)
        reported = handle.execute("PRAGMA page_count").fetchone()[0]
        handle.close()
        assert reported > stale + 10
        data, counts = image_of(path, live)
        assert counts == {"t": 301}
        assert len(data) // 4096 == reported
        assert int.from_bytes(data[28:32], "big") == reported
    finally:
        writer.close()


@pytest.mark.parametrize("live", [True, False], ids=["file-image", "backup-api"])
def test_rollback_journal_source(tmp_path: Path, live: bool) -> None:
    path = tmp_path / "app.db"
    make(path, "delete").close()
    data, counts = image_of(path, live)
    assert counts == {"t": 301}
    assert len(data) // 4096 == header_page_count(path) == path.stat().st_size // 4096


@pytest.mark.parametrize("mode", ["wal", "delete"])
@pytest.mark.parametrize("live", [True, False], ids=["image", "backup-api"])
def test_a_handle_on_another_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, live: bool
) -> None:
    """The #15 bug, reintroduced at the open: SQLite is handed a cut-off path and opens (or
    creates) another, smaller database. The page count check refuses the image."""
    path = tmp_path / "a#b" / "app.db"
    path.parent.mkdir()
    make(path, mode).close()
    other = tmp_path / "a"
    conn = sqlite3.connect(other)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    real_open = open_sqlite

    def wrong_file(named, **kw):  # type: ignore[no-untyped-def]
        return real_open(other if Path(named) == path else named, **kw)

    monkeypatch.setattr(walimage, "open_sqlite", wrong_file)
    monkeypatch.setattr(snapshot, "open_sqlite", wrong_file)
    if mode == "delete":  # prove the header comparison alone catches it
        monkeypatch.setattr(snapshot, "check_same_file", lambda conn, named: None)
    # WAL: the device+inode check of the handle (the count compared is that handle's)
    with pytest.raises(DatabaseError, match="pages but|instead of") as caught:
        image_of(path, live)
    if mode == "delete":
        assert isinstance(caught.value, PageCountMismatch)
        assert "integrity_check" in (caught.value.hint or "")  # what to do, not "report this"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("emrops-")] == []
