"""``backup restore`` onto the SQLite file a running ``sim serve`` has open.

The server is a real process; the restore runs through the CLI meanwhile. The server must serve
the restored rows (the session created after the backup gone, the earlier ones there) within
5 s, in the same process, with the file's inode, owner, group and mode unchanged.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from emrops.backup.sqlite_swap import restore_in_place
from emrops.errors import DatabaseError
from tests.sim.conftest import Server, wait_for

NOBODY = 65534


def _session(http: httpx.Client) -> str:
    response = http.post("/api/sessions", json={"scenario_id": 1})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _say(http: httpx.Client, sid: str, content: str) -> None:
    response = http.post(f"/api/sessions/{sid}/messages", json={"content": content})
    assert response.status_code == 201, response.text


def _messages(http: httpx.Client, sid: str) -> int:
    response = http.get(f"/api/sessions/{sid}/messages", params={"limit": 500})
    assert response.status_code == 200, response.text
    return len(response.json()["items"])


def _json(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return dict(json.loads(result.stdout))


def _backup(cli, db: str, store: Path) -> str:  # type: ignore[no-untyped-def]
    run = cli("backup", "run", "--db", db, "--store", str(store), "--json")
    return str(_json(run)["manifest"]["id"])


def _restore(cli, backup_id: str, path: Path, store: Path) -> dict:  # type: ignore[no-untyped-def]
    return _json(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(path),
            "--force",
            "--yes",
            "--json",
            "--store",
            str(store),
        )
    )


def test_restore_under_a_running_server_is_served_within_5s(
    start_server, sqlite_db: str, cli, tmp_path: Path
) -> None:
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o640)
    inode = path.stat().st_ino
    store = tmp_path / "backups"
    server: Server = start_server("--db", sqlite_db)
    pid = server.proc.pid
    with server.http() as http:
        first, second = _session(http), _session(http)
        _say(http, first, "When did the pain start?")
        before = _messages(http, first)
        backup_id = _backup(cli, sqlite_db, store)
        late = _session(http)  # after the backup: the restore must take it away
        _say(http, first, "And does it spread anywhere?")
        assert http.get(f"/api/sessions/{late}").status_code == 200
        assert _messages(http, first) == before + 2

        done = _restore(cli, backup_id, path, store)
        restored_at = time.monotonic()

        def restored() -> bool:
            return http.get(f"/api/sessions/{late}").status_code == 404

        assert wait_for(restored, 5.0, 0.05), "the server still serves the pre-restore data"
        assert time.monotonic() - restored_at < 5.0
        for sid in (first, second):
            assert http.get(f"/api/sessions/{sid}").status_code == 200
        assert _messages(http, first) == before
        assert any("restored in place" in note for note in done["notes"]), done["notes"]
        # The flag came back off with the restored data: writes work again within a poll.
        assert wait_for(
            lambda: http.post("/api/sessions", json={"scenario_id": 1}).status_code == 201, 5.0, 0.1
        )
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["maintenance"] is False
    assert server.proc.poll() is None and server.proc.pid == pid
    assert server.log().count("serving ") == 1  # started once, never restarted or switched
    assert "was replaced" not in server.log()  # in place: nothing to reopen
    after = path.stat()
    assert after.st_ino == inode
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (NOBODY, NOBODY, 0o640)
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        if side.exists():  # SQLite (as root) gives its side files the database's owner
            assert (side.stat().st_uid, side.stat().st_gid) == (NOBODY, NOBODY)


def test_readers_never_see_a_half_restored_database(
    start_server, sqlite_db: str, cli, tmp_path: Path
) -> None:
    """While the restore runs, every read answers 200 with either the old or the restored
    messages of a session: never an error, never something in between."""
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    store = tmp_path / "backups"
    server: Server = start_server("--db", sqlite_db)
    with server.http() as http:
        sid = _session(http)
        for i in range(5):
            _say(http, sid, f"question {i}")
        old_count = _messages(http, sid)
        backup_id = _backup(cli, sqlite_db, store)
        for i in range(5):
            _say(http, sid, f"later question {i}")
        new_count = _messages(http, sid)

    seen: list[int | str] = []
    stop = threading.Event()

    def read() -> None:
        with server.http() as reader:
            while not stop.is_set():
                response = reader.get(f"/api/sessions/{sid}/messages", params={"limit": 500})
                if response.status_code != 200:
                    seen.append(f"{response.status_code} {response.text}")
                else:
                    seen.append(len(response.json()["items"]))

    thread = threading.Thread(target=read)
    thread.start()
    try:
        assert wait_for(lambda: len(seen) >= 3, 10.0)
        _restore(cli, backup_id, path, store)
        restored_at = len(seen)
        assert wait_for(lambda: len(seen) >= restored_at + 3, 10.0)
    finally:
        stop.set()
        thread.join(10)
    assert set(seen) == {old_count, new_count}, seen[:10]  # both, and nothing else
    assert seen[-1] == old_count  # ends on the restored data, and never goes back
    assert new_count not in seen[seen.index(old_count) :]


def test_rollback_journal_target_keeps_its_mode_page_size_and_owner(
    sqlite_db: str, cli, tmp_path: Path
) -> None:
    """A target in rollback-journal mode with another page size than the backup: restored in
    place, still rollback-journal, its own page size, same inode/owner/mode."""
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    store = tmp_path / "backups"
    backup_id = _backup(cli, sqlite_db, store)
    expected = _counts(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA page_size = 8192")
    conn.execute("VACUUM")
    conn.execute("DELETE FROM scenarios WHERE id > 1")
    conn.close()
    os.chown(path, NOBODY, 0)
    os.chmod(path, 0o604)
    inode = path.stat().st_ino
    done = _restore(cli, backup_id, path, store)
    assert done["safety_backup_id"]
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 8192
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert _counts(path) == expected
    after = path.stat()
    assert (after.st_ino, after.st_uid, after.st_gid) == (inode, NOBODY, 0)
    assert stat.S_IMODE(after.st_mode) == 0o604
    assert not Path(f"{path}-wal").exists() and not Path(f"{path}-journal").exists()


def test_wal_target_with_another_page_size_is_restored_in_place(
    sqlite_db: str, cli, tmp_path: Path
) -> None:
    """SQLite's backup API refuses a WAL target of another page size: the image is rewritten at
    the target's page size first; the target stays WAL and holds the backup's rows."""
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    store = tmp_path / "backups"
    backup_id = _backup(cli, sqlite_db, store)
    expected = _counts(path)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.execute("PRAGMA page_size = 16384")
    conn.execute("VACUUM")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("DELETE FROM scenarios WHERE id > 1")
    reader = sqlite3.connect(path)  # another open handle, as a server would hold
    reader.execute("SELECT count(*) FROM scenarios").fetchone()
    conn.close()
    inode = path.stat().st_ino
    try:
        _restore(cli, backup_id, path, store)
        assert (
            reader.execute("SELECT count(*) FROM scenarios").fetchone()[0]
            == (expected["scenarios"])
        )
    finally:
        reader.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 16384
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    assert _counts(path) == expected and path.stat().st_ino == inode


def test_unreadable_target_moved_aside_hands_on_owner_and_mode(
    sqlite_db: str, cli, tmp_path: Path
) -> None:
    store = tmp_path / "backups"
    backup_id = _backup(cli, sqlite_db, store)
    junk = tmp_path / "junk.db"
    junk.write_text("not a database\n" * 10)
    os.chown(junk, NOBODY, NOBODY)
    os.chmod(junk, 0o640)
    done = _restore(cli, backup_id, junk, store)
    assert Path(done["moved_aside"]).read_text().startswith("not a database")
    after = junk.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert _counts(junk)["scenarios"] > 0


def _counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


def test_in_place_copy_gives_up_on_a_held_write_lock_and_changes_nothing(
    sqlite_db: str, tmp_path: Path
) -> None:
    """Another writer holding the target's write lock past the busy timeout: a clear error,
    the target unchanged; once the lock is free the same copy goes through."""
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    image = tmp_path / "image.db"
    source = sqlite3.connect(path)
    target = sqlite3.connect(image)
    source.backup(target)
    target.close()
    source.close()
    conn = sqlite3.connect(image)
    conn.execute("DELETE FROM scenarios WHERE id > 1")
    conn.commit()
    conn.close()
    before = _counts(path)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError) as raised:
            restore_in_place(image, path, busy_timeout=0.3)
        assert "stayed locked by another writer" in str(raised.value)
        assert "nothing was restored" in str(raised.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _counts(path) == before
    restore_in_place(image, path, busy_timeout=0.3)
    assert _counts(path)["scenarios"] == 1


def test_a_reader_mid_transaction_keeps_its_snapshot_then_sees_the_restore(
    sqlite_db: str, cli, tmp_path: Path
) -> None:
    """WAL target: a read transaction open across the restore goes on seeing the old data
    (never a mix); its next transaction sees the restored data. The restore does not wait for
    it beyond the checkpoint's short courtesy wait."""
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    store = tmp_path / "backups"
    backup_id = _backup(cli, sqlite_db, store)
    full = _counts(path)["scenarios"]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DELETE FROM scenarios WHERE id > 1")
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM scenarios").fetchone()[0] == 1
        started = time.monotonic()
        _restore(cli, backup_id, path, store)
        assert time.monotonic() - started < 15
        assert reader.execute("SELECT count(*) FROM scenarios").fetchone()[0] == 1
        reader.execute("COMMIT")
        assert reader.execute("SELECT count(*) FROM scenarios").fetchone()[0] == full
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        reader.close()
        conn.close()
