"""The direct image reader: the same database as SQLite sees it, while writers keep going."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emrops.backup.snapshot import sqlite_snapshot
from emrops.backup.walimage import LiveImage, Restarted


def series(count: int, expr: str) -> str:
    return (
        f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {count}) "
        f"SELECT {expr} FROM s"
    )


def image_bytes(image: LiveImage) -> bytes:
    chunks = []
    while chunk := image.read(1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def content(path: Path) -> list[tuple]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT id, body FROM notes ORDER BY id").fetchall()


def source_hash(path: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in path.parent.iterdir()
        if p.name.startswith(path.name)
    }


def wal_writer(path: Path, rows: int) -> sqlite3.Connection:
    """An open WAL-mode connection (no automatic checkpoints) to a new ``notes`` table."""
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    writer.execute("INSERT INTO notes (body) " + series(rows, "'n' || n"))
    return writer


@pytest.fixture
def wal_db(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A WAL database with committed changes still in the WAL (a writer keeps it open)."""
    path = tmp_path / "live.db"
    writer = wal_writer(path, 3000)
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for n in range(200):  # updates and growth that live only in the WAL
        writer.execute("UPDATE notes SET body = ? WHERE id = ?", (f"new {n}", n * 7 + 1))
        writer.execute("INSERT INTO notes (body) VALUES (?)", ("x" * 500,))
    yield path, writer
    writer.close()


def test_image_includes_the_wal_and_leaves_the_source_alone(wal_db, tmp_path: Path) -> None:
    path, writer = wal_db
    assert (tmp_path / "live.db-wal").stat().st_size > 100_000
    expected = writer.execute("SELECT id, body FROM notes ORDER BY id").fetchall()
    before = source_hash(path)
    with LiveImage(path) as image:
        assert image.wal and image.frames
        data = image_bytes(image)
        assert len(data) == image.size == image.page_size * image.page_count
    assert source_hash(path) == before
    copy = tmp_path / "copy.db"
    copy.write_bytes(data)
    assert content(copy) == expected
    assert copy.stat().st_size > path.stat().st_size  # the growth came from the WAL


def test_image_is_one_point_in_time_while_a_writer_commits(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("CREATE TABLE total (n INTEGER)")
        conn.execute("INSERT INTO total VALUES (0)")
    # each transaction adds two rows and counts them; tiny autocheckpoints restart the WAL often
    code = f"""
import sqlite3, time
conn = sqlite3.connect({str(path)!r}, isolation_level=None, timeout=30)
conn.execute("PRAGMA wal_autocheckpoint = 20")
deadline = time.monotonic() + 4
while time.monotonic() < deadline:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO notes (body) VALUES (hex(randomblob(300)))")
    conn.execute("INSERT INTO notes (body) VALUES (hex(randomblob(300)))")
    conn.execute("UPDATE total SET n = n + 2")
    conn.execute("COMMIT")
"""
    writer = subprocess.Popen([sys.executable, "-c", code])
    images = restarts = 0
    try:
        time.sleep(0.3)
        while writer.poll() is None:
            try:
                with sqlite_snapshot(path) as snap:
                    assert snap.stream is not None
                    data = snap.stream.read(1 << 30) + snap.stream.read(1 << 30)
                    assert snap.stream.read() == b""
            except Restarted:
                restarts += 1
                continue
            copy = tmp_path / f"image-{images}.db"
            copy.write_bytes(data)
            with sqlite3.connect(copy) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                rows = conn.execute("SELECT count(*) FROM notes").fetchone()[0]
                assert conn.execute("SELECT n FROM total").fetchone()[0] == rows
                assert snap.row_counts["notes"] == rows
            assert snap.engine_info["snapshot"] == "wal-image"
            copy.unlink()
            images += 1
    finally:
        writer.wait(timeout=30)
    assert writer.returncode == 0
    assert images >= 5, (images, restarts)


def test_a_restarted_wal_is_detected(tmp_path: Path) -> None:
    """Reader on read-lock 0 (WAL fully checkpointed): a writer may restart the WAL under it."""
    path = tmp_path / "restart.db"
    writer = wal_writer(path, 500)
    writer.execute("PRAGMA wal_checkpoint(PASSIVE)")  # all frames in the file, WAL not reset
    expected = writer.execute("SELECT id, body FROM notes ORDER BY id").fetchall()
    image = LiveImage(path).open()
    try:
        assert image.frames  # mapped, though the main file already has them
        writer.execute("INSERT INTO notes (body) VALUES ('after')")  # restarts the WAL
        with pytest.raises(Restarted):
            image_bytes(image)
    finally:
        image.close()
    # read again: the new snapshot includes the new row and is whole
    with LiveImage(path) as again:
        copy = tmp_path / "copy.db"
        copy.write_bytes(image_bytes(again))
    assert content(copy) == [*expected, (501, "after")]
    writer.close()


def test_rollback_journal_database_and_backup_api_fallback(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"r{n}",) for n in range(2000)])
    expected = content(path)
    for live, method in ((True, "file-image"), (False, "backup-api")):
        with sqlite_snapshot(path, tmp_path, live=live) as snap:
            assert snap.stream is not None and snap.engine_info["snapshot"] == method
            copy = tmp_path / f"{method}.db"
            copy.write_bytes(snap.stream.read(1 << 30))
        assert content(copy) == expected
        assert snap.row_counts == {"notes": 2000}
    assert not list(tmp_path.glob("emrops-snapshot-*"))  # the fallback's scratch file is gone
