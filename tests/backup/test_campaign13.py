"""Session 13 hostile campaign: rotate on stores that refuse some deletes (immutable files,
Azure legal holds), and the other cases of docs/backup.md "Session 13"."""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.backup.conftest import DEV_KEY, json_of, listed


def small_db(path: Path, rows: int = 50) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def backups(cli, db: str, store: str, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for _ in range(count):
        result = cli("backup", "run", "--db", db, "--store", store, "--json")
        ids.append(json_of(result)["manifest"]["id"])
    result = cli("backup", "verify", "--all", "--store", store)
    assert result.exit_code == 0, result.stderr
    return ids


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """chattr +i (root may not unlink them either); always lifted again."""
    subprocess.run(["chattr", "+i", *map(str, paths)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


# -- rotate: a store that refuses some deletes -------------------------------------------


def test_rotate_goes_on_past_undeletable_backups_and_exits_1(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    ids = backups(cli, db, str(store), 5)  # oldest first
    # ids[3]: its manifest cannot be deleted; ids[2]: its data file cannot (manifest can)
    with immutable(store / ids[3] / "manifest.json", store / ids[2] / "database.sqlite.zst"):
        result = cli("backup", "rotate", "--keep-last", "1", "--store", str(store))
        assert result.exit_code == 1, result.stderr
        assert "unexpected" not in result.stderr
        assert "rotate could not delete 2 of the 4 backup(s) no rule keeps" in result.stderr
        assert f"{ids[3]}: cannot delete {ids[3]}/manifest.json" in result.stderr
        assert f"backup {ids[2]} was left whole" in result.stderr
        assert f"Deleted: {ids[1]}, {ids[0]}" in result.stderr
        assert "lsattr -d" in result.stderr
        left = {b["id"]: b for b in listed(cli, store)}
    # the older deletable ones went; the refused ones are whole, still verified and restorable
    assert sorted(left) == ids[2:]
    assert all(b["verified"] == "ok" for b in left.values())
    assert not (store / ids[0]).exists() and not (store / ids[1]).exists()
    result = cli("backup", "verify", ids[2], "--store", str(store))
    assert result.exit_code == 0, result.stderr
    # once the store allows it, the next rotate finishes the job
    result = cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json")
    assert json_of(result)["deleted"] == [ids[3], ids[2]]
    assert [b["id"] for b in listed(cli, store)] == [ids[4]]


def test_rotate_of_an_immutable_folder_keeps_every_rule_kept_backup(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    ids = backups(cli, db, str(store), 4)
    with immutable(store / ids[0]):  # the folder: nothing in it may be unlinked
        result = cli("backup", "rotate", "--keep-last", "2", "--store", str(store))
    assert result.exit_code == 1, result.stderr
    assert f"{ids[0]}: cannot delete {ids[0]}/manifest.json" in result.stderr
    assert f"Deleted: {ids[1]}" in result.stderr
    assert [b["id"] for b in listed(cli, store)] == [ids[0], ids[2], ids[3]]
    assert all((store / i / "database.sqlite.zst").is_file() for i in (ids[0], ids[2], ids[3]))


def test_backup_run_removes_leftovers_past_an_undeletable_one(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    ids = backups(cli, db, str(store), 1)
    # two crashed runs' folders (no manifest); one of them cannot be removed
    for name in ("20260101T000000.000Z-aaaaaa", "20260102T000000.000Z-bbbbbb"):
        (store / name).mkdir(mode=0o700)
        (store / name / "database.sqlite.zst").write_bytes(b"partial")
    with immutable(store / "20260101T000000.000Z-aaaaaa" / "database.sqlite.zst"):
        result = cli("backup", "run", "--db", db, "--store", str(store), "--json")
        assert result.exit_code == 0, result.stderr
        assert "leftovers of interrupted runs stay" in result.stderr
        assert "removed 20260102T000000.000Z-bbbbbb" in result.stderr
    assert not (store / "20260102T000000.000Z-bbbbbb").exists()
    assert len(listed(cli, store)) == len(ids) + 1


# -- the same against Azure Blob (Azurite behind a proxy that plays a legal hold) ---------


class _HoldProxy:
    """Forwards every request to Azurite, except DELETEs of blobs under ``held`` prefixes,
    which get Azure's answer for a blob under a legal hold (Azurite enforces none)."""

    def __init__(self, upstream_port: int):
        self.held: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "DELETE" and any(h in self.path for h in proxy.held):
                    message = b"This operation is not permitted as the blob has a legal hold."
                    self.send_response(409)
                    self.send_header("x-ms-error-code", "BlobImmutableDueToLegalHold")
                    self.send_header("Content-Length", str(len(message)))
                    self.end_headers()
                    self.wfile.write(message)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = f"127.0.0.1:{upstream_port}"
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                skip = ("transfer-encoding", "connection")
                if self.command != "HEAD":  # a HEAD's Content-Length is the blob's size
                    skip += ("content-length",)
                    self.send_header("Content-Length", str(len(data)))
                for key, value in answer.getheaders():
                    if key.lower() not in skip:
                        self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_DELETE = do_HEAD = do_POST = _forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_rotate_on_azure_goes_on_past_a_legal_hold(
    cli, tmp_path: Path, azurite: str, azure_store: str, monkeypatch
) -> None:
    upstream = int(azurite.split("127.0.0.1:")[1].split("/")[0])
    proxy = _HoldProxy(upstream)
    try:
        monkeypatch.setenv(
            "EMROPS_AZURE_STORAGE_CONNECTION_STRING",
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
            f"AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{proxy.port}/devstoreaccount1;",
        )
        monkeypatch.setenv("EMROPS_AZURE_STORAGE_RETRY_BUDGET", "1")
        db = small_db(tmp_path / "app.db")
        ids = backups(cli, db, azure_store, 4)
        proxy.held = [f"/{ids[1]}/"]  # every blob of that backup is on hold
        result = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store)
        assert result.exit_code == 1, result.stderr
        assert "unexpected" not in result.stderr
        assert "rotate could not delete 1 of the 3 backup(s) no rule keeps" in result.stderr
        assert "409 BlobImmutableDueToLegalHold" in result.stderr
        assert f"Deleted: {ids[2]}, {ids[0]}" in result.stderr
        left = listed(cli, azure_store)
        assert [b["id"] for b in left] == [ids[1], ids[3]]
        assert [b["verified"] for b in left] == ["ok", "ok"]
        # a hold on the data only: the manifest goes first, is refused nothing, and comes back
        proxy.held = [f"/{ids[1]}/database.sqlite.zst"]
        result = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store)
        assert result.exit_code == 1, result.stderr
        assert f"backup {ids[1]} was left whole" in result.stderr
        assert [b["verified"] for b in listed(cli, azure_store)] == ["ok", "ok"]
        result = cli("backup", "verify", ids[1], "--store", azure_store)
        assert result.exit_code == 0, result.stderr
    finally:
        proxy.close()


@pytest.fixture(autouse=True)
def _no_leftover_immutable(tmp_path: Path) -> Iterator[None]:
    yield
    # a failed assertion inside `immutable` still lifts the flag (finally); this is for safety
    subprocess.run(["chattr", "-R", "-i", str(tmp_path)], check=False, capture_output=True)


# -- a rollback-journal source is not held locked through compression and upload ----------


def test_rollback_journal_writers_wait_for_the_copy_not_the_compression(
    cli, tmp_path: Path, monkeypatch
) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    rows = ((os.urandom(300) + b"x" * 700,) for _ in range(40_000))  # ~40 MB, slow at level 19
    conn.executemany("INSERT INTO t (v) VALUES (?)", rows)
    conn.commit()
    conn.close()
    monkeypatch.setenv("EMROPS_BACKUP_COMPRESSION_LEVEL", "19")
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        db = sqlite3.connect(path, timeout=120, isolation_level=None)
        while not stop.is_set():
            started = time.monotonic()
            db.execute("INSERT INTO t (v) VALUES (x'00')")
            waits.append(time.monotonic() - started)
            time.sleep(0.01)
        db.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        result = cli("backup", "run", "--db", f"sqlite:///{path}", "--store", str(tmp_path / "st"))
        took = time.monotonic() - started
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert result.exit_code == 0, result.stderr
    assert took > 1.0  # compression at level 19 dominates the run
    # before: the writer waited for the whole run (the read lock was held through it)
    assert max(waits) < took / 3, (max(waits), took)
    result = cli("backup", "verify", "--latest", "--store", str(tmp_path / "st"))
    assert result.exit_code == 0, result.stderr


# -- restore targets and stores this user may not read or write ---------------------------

AS_OTHER_USER = [  # root without the capabilities that let it ignore file permissions
    "setpriv",
    "--inh-caps=-all",
    "--bounding-set=-dac_override,-dac_read_search,-fowner",
]


def emrops_without_override(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AS_OTHER_USER, sys.executable, "-m", "emrops", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def live_wal_db(path: Path) -> None:
    """A WAL database with committed frames still in its -wal (as a running app leaves it)."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE app (id INTEGER PRIMARY KEY)")
    conn.executemany("INSERT INTO app VALUES (?)", [(i,) for i in range(10)])
    conn.commit()
    # leave -wal and -shm behind, as a process that has it open does
    for side in ("-wal", "-shm"):
        shutil.copyfile(f"{path}{side}", f"{path}{side}.keep")
    conn.close()
    os.replace(f"{path}-wal.keep", f"{path}-wal")
    os.replace(f"{path}-shm.keep", f"{path}-shm")


def test_restore_refuses_a_live_database_this_user_cannot_open(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    backup_id = backups(cli, db, str(store), 1)[0]
    live = tmp_path / "live" / "emrsim.db"
    live.parent.mkdir()
    live.parent.chmod(0o777)
    live_wal_db(live)
    for side in ("-wal", "-shm"):  # the app's user owns them (0600); the operator is another
        os.chown(f"{live}{side}", 65534, 65534)
        os.chmod(f"{live}{side}", 0o600)
    before = {p.name: p.read_bytes() for p in live.parent.iterdir()}
    done = emrops_without_override(
        "backup", "restore", backup_id, "--store", str(store), "--target", str(live), "--yes",
        "--force",
    )  # fmt: skip
    # before: moved aside as "not a readable SQLite database", with no maintenance and no
    # safety backup, while its app went on writing into the moved file
    assert done.returncode == 1, done.stderr
    assert "it is not moved aside as unreadable: nothing was changed" in done.stderr
    assert "unexpected" not in done.stderr
    assert {p.name: p.read_bytes() for p in live.parent.iterdir()} == before
    # the same for a target this user may not read at all
    os.chmod(live, 0o000)
    done = emrops_without_override(
        "backup", "restore", backup_id, "--store", str(store), "--target", str(live), "--yes",
        "--force",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "cannot open restore target" in done.stderr and "Permission denied" in done.stderr
    assert sorted(p.name for p in live.parent.iterdir()) == sorted(before)


def test_restore_into_a_folder_that_cannot_be_written(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    backup_id = backups(cli, db, str(store), 1)[0]
    folder = tmp_path / "target"
    folder.mkdir()
    live = folder / "live.db"
    live_wal_db(live)
    os.unlink(f"{live}-shm")  # SQLite must create it to read the WAL, and cannot
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with immutable(folder):
        new = cli("backup", "restore", backup_id, "--store", str(store),
                  "--target", str(folder / "new.db"), "--yes")  # fmt: skip
        old = cli("backup", "restore", backup_id, "--store", str(store),
                  "--target", str(live), "--yes", "--force")  # fmt: skip
    assert new.exit_code == 1, new.stderr
    assert f"cannot write into {folder}, the folder of restore target new.db" in new.stderr
    assert old.exit_code == 1, old.stderr
    assert "it is not moved aside as unreadable: nothing was changed" in old.stderr
    assert "unexpected" not in new.stderr + old.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_store_of_another_user_is_an_error_and_records_nothing(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    backup_id = backups(cli, db, str(store), 1)[0]
    record = (store / backup_id / "verification.json").read_bytes()
    for path in (store, *store.rglob("*")):
        os.chown(path, 65534, 65534)
    listing = emrops_without_override("backup", "list", "--store", str(store))
    assert listing.returncode == 1, listing.stderr
    assert f"cannot read {store} in backup store {store}: Permission denied" in listing.stderr
    assert "(owned by nobody)" in listing.stderr and "sudo -u" in listing.stderr
    store.chmod(0o755)  # the folder listable, the backup's files still not readable
    done = emrops_without_override("backup", "restore", backup_id, "--store", str(store),
                                   "--target", str(tmp_path / "new.db"), "--yes")  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "manifest.json in backup store" in done.stderr and "unexpected" not in done.stderr
    assert not (tmp_path / "new.db").exists()
    assert (store / backup_id / "verification.json").read_bytes() == record


# -- a verified backup whose files went since its verification ---------------------------


def test_rotate_keeps_the_intact_backup_when_newer_verified_ones_lost_their_data(
    cli, tmp_path: Path
) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    ids = backups(cli, db, str(store), 3)
    (store / ids[2] / "database.sqlite.zst").unlink()  # a cleanup script, a lifecycle rule
    data = store / ids[1] / "database.sqlite.zst"
    data.write_bytes(data.read_bytes()[:100])  # cut short
    shown = {b["id"]: b for b in listed(cli, store)}
    assert shown[ids[2]]["verified"] == "failed"
    assert "since then database.sqlite.zst is missing" in shown[ids[2]]["reason"]
    assert shown[ids[1]]["verified"] == "failed"
    assert "is 100 bytes, the manifest says" in shown[ids[1]]["reason"]
    assert shown[ids[0]]["verified"] == "ok"
    result = cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json")
    # before: ids[2] was "newest verified" and the only restorable backup, ids[0], was deleted
    decisions = {d["id"]: d for d in json_of(result)["decisions"]}
    assert json_of(result)["deleted"] == []
    assert decisions[ids[0]]["reasons"] == ["newest verified", "last"]
    result = cli("backup", "restore", "--latest", "--store", str(store),
                 "--target", str(tmp_path / "r.db"), "--yes")  # fmt: skip
    assert result.exit_code == 3  # the newest is damaged: restore says so, restores nothing
    result = cli("backup", "restore", ids[0], "--store", str(store),
                 "--target", str(tmp_path / "r.db"), "--yes")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sqlite3.connect(tmp_path / "r.db").execute("SELECT count(*) FROM t").fetchone() == (50,)


def test_copy_to_the_same_store_through_a_link_is_refused(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    [backup_id] = backups(cli, db, str(store), 1)
    (tmp_path / "link").symlink_to(store)
    result = cli("backup", "copy", backup_id, "--store", str(store), "--to", str(tmp_path / "link"))
    # before: exit 75, "locked: backup copy (source) by pid N", N being the copy itself
    assert result.exit_code == 1, result.stderr
    assert "source and destination are the same store" in result.stderr
    assert f"({tmp_path / 'link'} leads to it)" in result.stderr
    assert [b["id"] for b in listed(cli, store)] == [backup_id]


def test_a_store_this_user_may_read_but_not_write_verifies_and_restores(
    cli, tmp_path: Path
) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    [backup_id] = backups(cli, db, str(store), 1)
    record = (store / backup_id / "verification.json").read_bytes()
    # a WORM copy: every file and folder immutable, the lock file included
    with immutable(store, store / ".lock", store / backup_id, *(store / backup_id).iterdir()):
        result = cli("backup", "verify", backup_id, "--store", str(store))
        assert result.exit_code == 0, result.stderr  # before: exit 1, cannot create the lock
        assert "holds its lock and records no result in it" in result.stderr
        result = cli("backup", "restore", backup_id, "--store", str(store),
                     "--target", str(tmp_path / "r.db"), "--yes")  # fmt: skip
        assert result.exit_code == 0, result.stderr
    assert (store / backup_id / "verification.json").read_bytes() == record
    assert sqlite3.connect(tmp_path / "r.db").execute("SELECT count(*) FROM t").fetchone() == (50,)
    # another user's store, readable by everyone, with no .lock yet
    (store / ".lock").unlink()
    for path in (store, *store.rglob("*")):
        os.chown(path, 65534, 65534)
        path.chmod(0o755 if path.is_dir() else 0o644)
    done = emrops_without_override("backup", "verify", backup_id, "--store", str(store))
    assert done.returncode == 0, done.stderr
    assert "goes on without its lock and records no result in it" in done.stderr
    assert not (store / ".lock").exists()


# -- PostgreSQL sources that cannot be reached: each cause named (emrops/db/pghints.py) ----


@pytest.mark.parametrize(
    ("url", "says", "hint"),
    [
        ("postgresql+psycopg://postgres@127.0.0.1:5432/emrops_no_such_db_13",
         'database "emrops_no_such_db_13" does not exist', "psql -l"),
        ("postgresql+psycopg://emrops_no_such_role_13@127.0.0.1:5432/postgres",
         'role "emrops_no_such_role_13" does not exist', "CREATE ROLE"),
        ("postgresql+psycopg://postgres@127.0.0.1:5432/postgres?sslmode=require",
         "SSL", "sslmode=require"),
    ],
)  # fmt: skip
def test_backup_run_names_why_postgresql_refused(
    cli, tmp_path: Path, url: str, says: str, hint: str
) -> None:
    result = cli("backup", "run", "--db", url, "--store", str(tmp_path / "st"))
    assert result.exit_code == 1, result.stderr
    error, _, tried = result.stderr.partition("Try: ")
    assert says in error
    assert hint in tried
    assert "check that PostgreSQL is running" not in result.stderr  # the old hint for all three
    assert not (tmp_path / "st").exists()


def test_restore_into_the_store_itself_is_refused(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    [backup_id] = backups(cli, db, str(store), 1)
    data = store / backup_id / "database.sqlite.zst"
    before = data.read_bytes()
    (tmp_path / "link").symlink_to(store / backup_id)
    for target in (data, tmp_path / "link" / "x.db", store / "new.db"):
        result = cli("backup", "restore", backup_id, "--store", str(store),
                     "--target", str(target), "--yes", "--force")  # fmt: skip
        # before (the data file): moved aside as "not a database", the image renamed over it,
        # exit 0, and the backup failed verification from then on
        assert result.exit_code == 2, result.stderr
        assert "is inside the backup store" in result.stderr
    assert data.read_bytes() == before
    assert sorted(p.name for p in (store / backup_id).iterdir()) == [
        "database.sqlite.zst", "manifest.json", "verification.json",
    ]  # fmt: skip
    assert cli("backup", "verify", backup_id, "--store", str(store)).exit_code == 0


def test_a_second_restore_of_one_backup_keeps_the_first_moved_aside_file(
    cli, tmp_path: Path
) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    [backup_id] = backups(cli, db, str(store), 1)
    target = tmp_path / "x.db"
    moved = []
    for content in (b"first unreadable file\n", b"second unreadable file\n"):
        target.write_bytes(content)
        result = cli("backup", "restore", backup_id, "--store", str(store),
                     "--target", str(target), "--yes", "--force", "--json")  # fmt: skip
        moved.append(json_of(result)["moved_aside"])
    # before: both went to x.db.before-restore-ID, the second renamed over the first
    assert moved == [
        f"{target}.before-restore-{backup_id}",
        f"{target}.before-restore-{backup_id}.2",
    ]
    assert Path(moved[0]).read_bytes() == b"first unreadable file\n"
    assert Path(moved[1]).read_bytes() == b"second unreadable file\n"


def test_rotate_keeps_the_safety_backup_of_a_restore(cli, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    db = small_db(path)
    store = tmp_path / "st"
    [first] = backups(cli, db, str(store), 1)
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO t (v) VALUES ('written after the backup')")
    conn.commit()
    conn.close()
    result = cli("backup", "restore", first, "--store", str(store), "--target", str(path),
                 "--yes", "--force", "--json")  # fmt: skip
    safety = json_of(result)["safety_backup_id"]
    backups(cli, db, str(store), 1)  # the next nightly run, verified
    result = cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json")
    # before: the safety backup (the only copy of the row written after the backup) was
    # "matches no keep rule" and deleted
    assert safety not in json_of(result)["deleted"]
    shown = {b["id"]: b for b in listed(cli, store)}
    assert shown[safety]["pinned"] is True
    assert "unpin it" in (store / safety / "pin.json").read_text()
    restored = tmp_path / "undo.db"
    result = cli("backup", "restore", safety, "--store", str(store), "--target", str(restored),
                 "--yes")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = sqlite3.connect(restored).execute("SELECT v FROM t ORDER BY id DESC LIMIT 1").fetchone()
    assert rows == ("written after the backup",)


def test_on_azure_a_verified_backup_whose_blob_went_is_not_counted(
    cli, tmp_path: Path, azurite: str, azure_store: str
) -> None:
    from azure.storage.blob import BlobServiceClient

    db = small_db(tmp_path / "app.db")
    ids = backups(cli, db, azure_store, 2)
    container, prefix = azure_store.removeprefix("azure://").split("/", 1)
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(container)
    client.delete_blob(f"{prefix}/{ids[1]}/database.sqlite.zst")
    shown = {b["id"]: b for b in listed(cli, azure_store)}
    assert shown[ids[1]]["verified"] == "failed"
    assert "database.sqlite.zst is missing" in shown[ids[1]]["reason"]
    result = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store, "--json")
    assert json_of(result)["deleted"] == []  # ids[0] is the newest intact verified backup


def test_rotate_refused_everywhere_names_the_first_reasons_then_ids(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    ids = backups(cli, db, str(store), 6)
    with immutable(*(store / i for i in ids[:5])):  # a store-wide retention lock, as it were
        result = cli("backup", "rotate", "--keep-last", "1", "--store", str(store))
    assert result.exit_code == 1, result.stderr
    assert "rotate could not delete 5 of the 5 backup(s) no rule keeps" in result.stderr
    assert result.stderr.count("Operation not permitted") == 3
    assert f"and 2 more: {ids[1]}, {ids[0]}" in result.stderr
    assert "Deleted: none" in result.stderr
    assert len(listed(cli, store)) == 6


def test_a_folder_named_like_an_id_in_fullwidth_digits_is_not_a_leftover(
    cli, tmp_path: Path
) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    backups(cli, db, str(store), 1)
    foreign = store / "２０２６０１０１T００００００.０００Z-aaaaaa"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not emrops's")
    result = cli("backup", "run", "--db", db, "--store", str(store))
    assert result.exit_code == 0, result.stderr
    # before: "removed 1 leftover(s) of interrupted runs", with the file in it
    assert (foreign / "notes.txt").read_text() == "not emrops's"
    result = cli("backup", "restore", foreign.name, "--store", str(store),
                 "--target", str(tmp_path / "r.db"), "--yes")  # fmt: skip
    assert result.exit_code == 2 and "invalid backup id" in result.stderr


def test_copy_goes_on_past_a_leftover_the_destination_cannot_remove(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store, other = tmp_path / "st", tmp_path / "other"
    [backup_id] = backups(cli, db, str(store), 1)
    leftover = other / "20260101T000000.000Z-aaaaaa"  # an earlier copy that died
    leftover.mkdir(parents=True)
    (leftover / "database.sqlite.zst").write_bytes(b"partial")
    with immutable(leftover / "database.sqlite.zst"):
        result = cli("backup", "copy", backup_id, "--store", str(store), "--to", str(other))
        # before: exit 1, "unexpected PermissionError" (session 12 code), no copy
        assert result.exit_code == 0, result.stderr
        assert "leftovers of interrupted runs stay" in result.stderr
    assert [b["id"] for b in listed(cli, other)] == [backup_id]


def test_restore_into_an_in_memory_database_is_a_usage_error(cli, tmp_path: Path) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    [backup_id] = backups(cli, db, str(store), 1)
    result = cli("backup", "restore", backup_id, "--store", str(store),
                 "--target", "sqlite:///:memory:", "--yes")  # fmt: skip
    # before: exit 1, "unexpected AssertionError"
    assert result.exit_code == 2, result.stderr
    assert "is an in-memory SQLite database" in result.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("backup", "list", "--source", "sqlite:///:memory:"), "is an in-memory SQLite database"),
        (("backup", "list", "--source", "~emrops_no_such_user/app.db"), "no such user"),
        (("backup", "restore", "--latest", "--source", "all", "--dry-run",
          "--target", "~emrops_no_such_user/app.db"), "no such user"),
    ],
)  # fmt: skip
def test_paths_and_urls_that_name_nothing_are_usage_errors(
    cli, tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    db = small_db(tmp_path / "app.db")
    store = tmp_path / "st"
    backups(cli, db, str(store), 1)
    result = cli(*args, "--store", str(store))
    # before: exit 1, "unexpected AssertionError" / "unexpected RuntimeError"
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr and "unexpected" not in result.stderr


def test_a_scratch_folder_too_small_for_the_rollback_journal_copy(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("a" * 1000,) for _ in range(3000)])
    conn.commit()
    conn.close()

    def limit() -> None:  # files this process writes may not pass 1 MiB: the copy is 3 MB
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    store = tmp_path / "st"
    done = subprocess.run(
        [sys.executable, "-m", "emrops", "backup", "run", "--db", f"sqlite:///{path}",
         "--store", str(store)],
        capture_output=True, text=True, preexec_fn=limit, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot copy {path} into" in done.stderr and "is the disk full?" in done.stderr
    assert "unexpected" not in done.stderr
    assert sorted(p.name for p in store.iterdir()) == [".lock"]


def test_a_scratch_folder_without_room_reads_the_image_under_the_lock(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Session 14: copying a rollback-journal image out needs its size free in the scratch
    folder; without it the backup was refused ("is the disk full?") though it could be made
    as before the copy existed, under the lock. The free space is what statvfs reports, so
    the report is replaced for the scratch folder only."""
    path = tmp_path / "app.db"
    db = small_db(path, rows=2000)
    real = shutil.disk_usage

    def no_room(folder: Any) -> Any:
        usage = real(folder)
        return usage._replace(free=1024) if Path(folder) == Path(tempfile.gettempdir()) else usage

    monkeypatch.setattr("emrops.backup.snapshot.shutil.disk_usage", no_room)
    store = tmp_path / "st"
    made = cli("backup", "run", "--db", db, "--store", str(store), "--json")
    manifest = json_of(made)["manifest"]
    assert "is read under its lock" in made.stderr, made.stderr
    assert manifest["row_counts"]["t"] == 2000
    monkeypatch.undo()
    checked = cli("backup", "verify", "--latest", "--store", str(store))
    assert checked.exit_code == 0, checked.stderr
