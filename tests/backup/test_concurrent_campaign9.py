"""SQLite sources that change underneath a backup, campaign 9 (see docs/backup.md, "Sources that
change during a backup, session 9"). Every database is built here with real SQLite; every other
writer is a real process.

A change that must land in the middle of the read runs, in another process, from the backup's
progress callback, which the snapshot calls after each MiB it streams (the sources are about
5 MiB). A change that must land in a window of microseconds (after the header was read, before
the read transaction began) runs from a subclass of LiveImage at that point, the way
test_page_count.py reintroduces a bug at the open.

Each case ends in a backup that restores to a committed state of the source (integrity_check
ok, the bank's total unchanged, whole writer transactions) and verifies (exit 0), or in a clear
error with a documented exit code and nothing in the store but its ``.lock``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from emrops.backup.snapshot import sqlite_snapshot
from emrops.backup.walimage import LiveImage, Restarted, SourceCutShort
from tests.backup.conftest import emrops_proc, json_of, run_backup

ACCOUNTS, BALANCE, BLOBS = 100, 100, 1200
TOTAL = ACCOUNTS * BALANCE
START = ("ok", TOTAL, BLOBS)  # integrity_check, total balance, blob rows of a fresh bank


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def bank(path: Path, mode: str) -> Path:
    """About 5 MiB: accounts whose balances always add up to TOTAL (transfers move money
    between two of them in one transaction), and blobs."""
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode = {mode}").fetchall()
    conn.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
    conn.executemany("INSERT INTO acct(bal) VALUES (?)", [(BALANCE,)] * ACCOUNTS)
    conn.execute("CREATE TABLE blob(id INTEGER PRIMARY KEY, b BLOB)")
    conn.executemany("INSERT INTO blob(b) VALUES (randomblob(4000))", [()] * BLOBS)
    conn.commit()
    conn.close()
    return path


def state(path: Path) -> tuple[str, int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return (
            conn.execute("PRAGMA integrity_check").fetchone()[0],
            conn.execute("SELECT sum(bal) FROM acct").fetchone()[0],
            conn.execute("SELECT count(*) FROM blob").fetchone()[0],
        )
    finally:
        conn.close()


def restored_state(cli, store: Path, backup_id: str, target: Path) -> tuple[str, int, int]:  # type: ignore[no-untyped-def]
    """verify exits 0, then the state of a restore into a new file."""
    verified = cli("backup", "verify", backup_id, "--store", str(store))
    assert verified.exit_code == 0, verified.stderr
    json_of(cli("backup", "restore", backup_id, "--store", str(store), "--target", str(target),
                "--yes", "--json"))  # fmt: skip
    return state(target)


# A process that keeps a connection open on a WAL database with committed frames in the WAL
# (no checkpoint folds them into the file) until its stdin closes.
HOLD_WAL = textwrap.dedent("""
    import sqlite3, sys
    c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA wal_autocheckpoint = 0")
    for i in range(30):
        c.execute("BEGIN IMMEDIATE")
        c.execute("UPDATE acct SET bal = bal - 5 WHERE id = ?", (i + 1,))
        c.execute("UPDATE acct SET bal = bal + 5 WHERE id = ?", (i + 51,))
        c.execute("DELETE FROM blob WHERE id = ?", (i + 1,))
        c.execute("COMMIT")
    print("ready", flush=True)
    sys.stdin.read()
""")
HELD = ("ok", TOTAL, BLOBS - 30)  # the bank once HOLD_WAL committed


@contextmanager
def holding_wal(path: Path) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_WAL, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        assert Path(f"{path}-wal").stat().st_size > 30 * 4096  # the frames are in the WAL
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def store_names(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir())


# --- 3. a source cut short before the backup -------------------------------------------------


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_source_cut_inside_its_last_page_is_refused(cli, tmp_path: Path, mode: str) -> None:
    """SQLite reads the missing tail of a file cut inside its last page as zeros, without an
    error, and integrity_check does not look inside a blob: the backup was published (exit 0,
    after three "WAL restarted" notes through the backup API) and verify passed it, with 1000
    bytes of a blob turned into zeros. Now refused (exit 1) naming the page, nothing published."""
    source = bank(tmp_path / "cut.db", mode)
    size = source.stat().st_size
    os.truncate(source, size - 1000)
    store = tmp_path / "store"
    result = cli("backup", "run", "--db", _url(source), "--store", str(store))
    assert result.exit_code == 1, result.stderr
    pages = size // 4096
    assert (
        f"Error: cannot back up {source}: it is cut short (page {pages} of {pages}, 4096 bytes "
        f"each, is not whole in the file, which ends at byte {size - 1000}); SQLite would read "
        "the missing bytes as zeros, so nothing was published"
    ) in result.stderr
    assert "Try: the file was truncated" in result.stderr and ".recover" in result.stderr
    assert "restarted" not in result.stderr and "Traceback" not in result.stderr
    assert store_names(store) == [".lock"]


def test_a_cut_source_whose_header_count_is_unreliable_is_refused_as_cut(tmp_path: Path) -> None:
    """A legacy writer leaves the header's page count unreliable: SQLite then counts the
    partial page as a page. The refusal names the cut (it said "would have N pages")."""
    source = bank(tmp_path / "legacy.db", "delete")
    with source.open("r+b") as handle:
        handle.seek(92)
        handle.write((0xDEAD).to_bytes(4, "big"))  # version-valid-for != change counter
    os.truncate(source, source.stat().st_size - 1000)
    with pytest.raises(SourceCutShort, match="it is cut short"), sqlite_snapshot(source, tmp_path):
        pass


def test_the_backup_api_refuses_a_cut_rollback_file_too(tmp_path: Path) -> None:
    """The fallback copy (used when the files are not in a shape the direct read knows) read
    the missing bytes as zeros, as any reader does."""
    source = bank(tmp_path / "cut.db", "delete")
    os.truncate(source, source.stat().st_size - 1000)
    snapshot = sqlite_snapshot(source, tmp_path, live=False)
    with pytest.raises(SourceCutShort, match="it is cut short") as caught, snapshot:
        pass
    assert ".recover" in (caught.value.hint or "")
    assert not list(tmp_path.glob("emrops-snapshot-*"))  # its scratch copy is gone


def test_a_wal_beside_a_rollback_header_is_read_as_sqlite_reads_it(cli, tmp_path: Path) -> None:
    """SQLite reads through a ``-wal`` beside a file whatever the file's header says (a file
    renamed into place beside another's WAL): every reader sees the WAL's rows. The direct read
    followed the header, found pages beyond the file and, with the cut check, would have
    called a whole file cut short; it now reads the WAL as SQLite does."""
    source = bank(tmp_path / "b.db", "delete")
    other = tmp_path / "a.db"
    other.write_bytes(source.read_bytes())
    conn = sqlite3.connect(other, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO blob(b) SELECT randomblob(4000) FROM blob LIMIT 50")
    Path(f"{source}-wal").write_bytes(Path(f"{other}-wal").read_bytes())
    conn.close()
    store = tmp_path / "store"
    manifest = run_backup(cli, _url(source), store)
    assert manifest["engine_info"]["snapshot"] == "wal-image"
    assert manifest["row_counts"]["blob"] == BLOBS + 50 == state(source)[2]  # what SQLite sees
    assert restored_state(cli, store, manifest["id"], tmp_path / "r.db") == ("ok", TOTAL, 1250)


# --- 1, 2. the source replaced, deleted, vacuumed, switched or checkpointed mid-read ---------

MIDREAD = textwrap.dedent("""
    import json, subprocess, sys
    from emrops.backup.run import RunOptions, run_backup
    from emrops.backup.stores import open_store
    from emrops.config import load_settings
    from emrops.errors import EmropsError
    db, store, change = sys.argv[1:4]
    said = []
    def progress(phase, done, total):
        # the first MiB of the image is read, not the rest (a rollback-journal image is copied
        # out under the read lock, then compressed: "copy")
        if phase in ("copy", "compress") and not said:
            run = subprocess.run([sys.executable, "-c", change, db], capture_output=True,
                                 text=True, check=False)
            said.append(run.stdout.strip() + run.stderr.strip()[-200:])
    try:
        manifest = run_backup(open_store(store, load_settings()),
                              RunOptions(db_url="sqlite:///" + db), progress)
        print(json.dumps({"id": manifest.id, "change": said}))
    except EmropsError as exc:
        print(json.dumps({"error": exc.message, "hint": exc.hint, "exit_code": int(exc.exit_code),
                          "change": said}))
""")

_NEW_FILE = """
import os, sqlite3, sys
p = sys.argv[1]
c = sqlite3.connect(p + ".new")
c.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
c.execute("INSERT INTO acct(bal) VALUES (7)")
c.commit(); c.close()
os.rename(p + ".new", p)
"""
_GONE = """
for suffix in {suffixes!r}:
    try: os.unlink(p + suffix)
    except FileNotFoundError: pass
print("{said}")
"""
_CONNECT = """
import os, sqlite3, sys
p = sys.argv[1]
c = sqlite3.connect(p, timeout=0.5, isolation_level=None)
def attempt(sql):
    try:
        return c.execute(sql).fetchall()
    except sqlite3.OperationalError as exc:
        print(exc)
"""
CHANGES = {
    # a deploy's copy-then-rename, and one that also removes the old WAL
    "replace": _NEW_FILE + 'print("replaced")',
    "replace-and-remove-wal": _NEW_FILE + _GONE.format(suffixes=("-wal", "-shm"), said="replaced"),
    "delete": "import os, sys\np = sys.argv[1]\n"
    + _GONE.format(suffixes=("", "-wal", "-shm", "-journal"), said="deleted"),
    "vacuum": _CONNECT + 'attempt("DELETE FROM blob WHERE id % 2 = 0")\n'
    'if attempt("VACUUM") is not None: print("vacuumed")',
    "vacuum-into-and-rename": _CONNECT + 'c.execute("VACUUM INTO ?", (p + ".v",)); c.close()\n'
    'os.rename(p + ".v", p); print("replaced")',
    "journal-mode-switch": _CONNECT + 'print(attempt("PRAGMA journal_mode = "'
    ' + ("DELETE" if attempt("PRAGMA journal_mode")[0][0] == "wal" else "WAL")))',
    "checkpoint-truncate": _CONNECT
    + textwrap.dedent("""
        for i in range(20):
            c.execute("BEGIN IMMEDIATE")
            c.execute("UPDATE acct SET bal = bal - 1 WHERE id = 1")
            c.execute("UPDATE acct SET bal = bal + 1 WHERE id = 2")
            c.execute("COMMIT")
        print(attempt("PRAGMA wal_checkpoint(TRUNCATE)"))
    """),
    # ignores SQLite's locks
    "truncate": "import os, sys\nos.truncate(sys.argv[1], os.path.getsize(sys.argv[1]) - 1000)",
}


@pytest.mark.parametrize("mode", ["delete", "wal"])
def test_a_source_truncated_during_the_read_is_refused(tmp_path: Path, mode: str) -> None:
    """A `truncate` ignores SQLite's locks. The image was read again as if the WAL had
    restarted, three times, then copied by the backup API with the cut bytes as zeros and
    published (exit 0), and it verified. Now: read again, found cut short, refused (exit 1)."""
    source = bank(tmp_path / "app.db", mode)
    store = tmp_path / "store"
    done = backup_with_change(source, store, "truncate")
    assert done.get("exit_code") == 1, done
    assert "it is cut short" in done["error"] and "the file was truncated" in done["hint"]
    assert store_names(store) == [".lock"]


def backup_with_change(source: Path, store: Path, change: str) -> dict:  # type: ignore[type-arg]
    proc = subprocess.run(
        [sys.executable, "-c", MIDREAD, str(source), str(store), CHANGES[change]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return {**json.loads(proc.stdout), "stderr": proc.stderr}


# (journal mode, change) -> what the change says it did. A rollback-journal source is under the
# backup's SHARED lock for the whole read, so changes that write wait and give up; a WAL source
# is read from the snapshot's frames, so they go through (a TRUNCATE checkpoint cannot finish
# while the backup reads: busy = 1).
MIDREAD_CASES = {
    ("delete", "replace"): "replaced",
    ("wal", "replace"): "replaced",
    ("wal", "replace-and-remove-wal"): "replaced",
    ("delete", "delete"): "deleted",
    ("wal", "delete"): "deleted",
    ("delete", "vacuum"): "database is locked",
    ("wal", "vacuum"): "vacuumed",
    ("delete", "vacuum-into-and-rename"): "replaced",
    ("wal", "vacuum-into-and-rename"): "replaced",
    ("delete", "journal-mode-switch"): "database is locked",
    ("wal", "journal-mode-switch"): "database is locked",
    ("wal", "checkpoint-truncate"): "[(1, ",
}


@pytest.mark.parametrize(
    ("mode", "change"), list(MIDREAD_CASES), ids=[f"{m}-{c}" for m, c in MIDREAD_CASES]
)
def test_a_change_during_the_read_leaves_the_backup_whole(
    cli, tmp_path: Path, mode: str, change: str
) -> None:
    """Replaced (rename over the path), deleted, vacuumed, VACUUM INTO + rename, journal mode
    switched, checkpointed with TRUNCATE while the backup reads: the backup holds the state of
    the file it opened when it began, restores to it and verifies; a path that no longer
    names that file is said on stderr."""
    source = bank(tmp_path / "app.db", mode)
    store = tmp_path / "store"
    if mode == "wal":
        with holding_wal(source):
            done, start = backup_with_change(source, store, change), HELD
    else:
        done, start = backup_with_change(source, store, change), START
    assert MIDREAD_CASES[(mode, change)] in done["change"][0], done
    assert "id" in done, done
    assert restored_state(cli, store, done["id"], tmp_path / "restored.db") == start
    moved = change.startswith(("replace", "delete", "vacuum-into"))
    assert ("was replaced or deleted during the backup" in done["stderr"]) == moved


# --- 2. a change in the window between the header read and the read transaction -------------

TO_WAL = (
    textwrap.dedent("""
    import sqlite3, sys
    c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
    print(c.execute("PRAGMA journal_mode = WAL").fetchone()[0], flush=True)
""")
    + HOLD_WAL.split('c.execute("PRAGMA journal_mode = WAL")\n', 1)[1]
)


class ChangedAsTheReadBegins(LiveImage):
    """Runs ``code`` in another process just before the read transaction begins, after the
    header was read: a window of microseconds in real life, opened here. The process keeps
    its connection until the test ends (``held``)."""

    def __init__(self, path: Path, code: str):
        super().__init__(path)
        self.code: str | None = code
        self.held: list[subprocess.Popen[str]] = []

    def _change(self) -> None:
        if self.code is not None:
            proc = subprocess.Popen(
                [sys.executable, "-c", self.code, str(self.path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            self.held.append(proc)
            assert proc.stdout is not None
            while proc.stdout.readline() not in ("ready\n", ""):
                pass
            self.code = None

    def _begin(self) -> None:
        self._change()
        super()._begin()

    def _begin_wal(self) -> None:
        self._change()
        super()._begin_wal()

    def release(self) -> None:
        for proc in self.held:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(timeout=30)


def image_state(image: LiveImage, copy: Path) -> tuple[str, int, int]:
    with copy.open("wb") as out:
        while chunk := image.read():
            out.write(chunk)
    return state(copy)


def test_a_switch_to_wal_as_the_read_begins_is_read_again(tmp_path: Path) -> None:
    """The header said rollback journal; before the read transaction began another process
    switched the file to WAL and committed 30 transactions into the WAL. The connection read
    through the WAL (row counts: 1170 blobs), the image was the main file alone (1200): backup
    exited 0 with an image older than its own row counts, which verify then failed (exit 3);
    commits that only updated rows would have left the counts equal, and a checkpoint under
    the read (the connection's read lock does not cover a file read as rollback journal)
    could tear the image. Now the mode the connection reads in is checked inside the
    transaction, and the image is read again."""
    source = bank(tmp_path / "app.db", "delete")
    racing = ChangedAsTheReadBegins(source, TO_WAL)
    try:
        with pytest.raises(Restarted, match="its journal mode changed to wal as the read began"):
            racing.open()
        with LiveImage(source) as again:  # what use_sqlite_snapshot does next
            assert again.wal
            assert image_state(again, tmp_path / "image.db") == HELD
    finally:
        racing.release()


REPLACE_WITH_WAL_DB = textwrap.dedent("""
    import os, sqlite3, sys
    p = sys.argv[1]
    c = sqlite3.connect(p + ".new", isolation_level=None)
    c.execute("PRAGMA journal_mode = WAL")
    c.execute("PRAGMA wal_autocheckpoint = 0")
    c.execute("CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL)")
    c.execute("CREATE TABLE blob(id INTEGER PRIMARY KEY, b BLOB)")
    c.executemany("INSERT INTO acct(bal) VALUES (?)", [(7,)] * 3)
    for suffix in ("", "-wal", "-shm"):  # a deploy that moves the WAL along with the file
        os.rename(p + ".new" + suffix, p + suffix)
    print("ready", flush=True)
    sys.stdin.read()
""")


def test_a_file_replaced_before_its_wal_is_opened_is_read_again(tmp_path: Path) -> None:
    """A WAL database renamed over the path, with its -wal and -shm, after the connection
    opened the old file but before the image opened the -wal and -shm by name: the image
    paired the new file's WAL with the old file's pages (refused only because the page counts
    happened to differ; with equal counts a mixed image would have been published). Now the
    path is checked inside the transaction, after the -wal and -shm are open."""
    source = bank(tmp_path / "app.db", "wal")
    with holding_wal(source):
        racing = ChangedAsTheReadBegins(source, REPLACE_WITH_WAL_DB)
        try:
            with pytest.raises(Restarted, match="the file was replaced or deleted"):
                racing.open()
            with LiveImage(source) as again:
                copy = tmp_path / "image.db"
                image_state(again, copy)
                conn = sqlite3.connect(copy)
                assert conn.execute("SELECT sum(bal), count(*) FROM acct").fetchone() == (21, 3)
                conn.close()
        finally:
            racing.release()


# --- 4. writers throughout the backup --------------------------------------------------------

GROUP = 7  # blob rows each writer transaction adds
WRITER = textwrap.dedent("""
    import os, sqlite3, sys, time
    path, mode, stop = sys.argv[1:4]
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    c.execute(f"PRAGMA journal_mode = {mode}")
    n = 0
    while not os.path.exists(stop):
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT INTO blob(b) VALUES (randomblob(3000))", [()] * 8)
        c.execute("DELETE FROM blob WHERE id = (SELECT min(id) FROM blob)")  # net +7
        c.execute("UPDATE acct SET bal = bal - 3 WHERE id = ?", (n * 13 % 100 + 1,))
        c.execute("UPDATE acct SET bal = bal + 3 WHERE id = ?", (n * 31 % 100 + 1,))
        c.execute("UPDATE blob SET b = randomblob(4000) WHERE id = ?", (n * 17 % 1000 + 500,))
        c.execute("COMMIT")
        n += 1
        time.sleep(0.002)  # a busy app, not a busy loop: the machine is shared
    print(n)
""")


def wait_for_commits(path: Path, more_than: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conn = sqlite3.connect(path, timeout=30)
        rows = conn.execute("SELECT count(*) FROM blob").fetchone()[0]
        conn.close()
        if rows >= more_than + 5 * GROUP:
            return int(rows)
        time.sleep(0.02)
    raise AssertionError("the writer made no progress")


@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_backups_under_a_writer_are_committed_states(cli, tmp_path: Path, mode: str) -> None:
    """A process commits transactions of 7 inserts, a delete and two updates (a transfer that
    keeps the bank's total) every few ms, in WAL and in rollback-journal mode, while
    `python -m emrops backup run` runs three times: each backup is one committed state (whole
    transactions, total unchanged, integrity_check ok), verifies and restores; the writer
    keeps committing between them."""
    source = bank(tmp_path / "app.db", mode)
    store, stop = tmp_path / "store", tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source), mode, str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    ids, seen = [], BLOBS
    try:
        for _ in range(3):
            seen = wait_for_commits(source, seen)
            result = emrops_proc("backup", "run", "--db", _url(source), "--store", str(store),
                                 "--json")  # fmt: skip
            assert result.returncode == 0, result.stderr
            ids.append(json.loads(result.stdout)["manifest"]["id"])
    finally:
        stop.touch()
        commits = int(writer.communicate(timeout=60)[0])
    assert commits > 15
    blobs = []
    for backup_id in ids:
        integrity, total, rows = restored_state(cli, store, backup_id, tmp_path / f"{backup_id}.db")
        assert (integrity, total) == ("ok", TOTAL)
        assert (rows - BLOBS) % GROUP == 0 and rows > BLOBS
        blobs.append(rows)
    assert blobs == sorted(blobs) and len(set(blobs)) == 3  # the writer went on between them


# --- 5. locks held by another process --------------------------------------------------------

EXCLUSIVE = textwrap.dedent("""
    import sqlite3, sys
    c = sqlite3.connect(sys.argv[1], isolation_level=None)
    c.execute("PRAGMA locking_mode = EXCLUSIVE")
    if sys.argv[2] == "write":
        c.execute("UPDATE acct SET bal = bal WHERE id = 1")  # takes the lock for good
    else:
        c.execute("SELECT count(*) FROM acct").fetchall()  # keeps its SHARED lock
    print("locked", flush=True)
    sys.stdin.read()
""")


@contextmanager
def exclusive_mode(path: Path, what: str) -> Iterator[None]:
    holder = subprocess.Popen(
        [sys.executable, "-c", EXCLUSIVE, str(path), what],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_reader_in_exclusive_locking_mode_does_not_block_the_backup(cli, tmp_path: Path) -> None:
    """A rollback-journal connection in `locking_mode=EXCLUSIVE` that has only read keeps a
    SHARED lock, which other readers share: the backup goes on."""
    source = bank(tmp_path / "app.db", "delete")
    store = tmp_path / "store"
    with exclusive_mode(source, "read"):
        manifest = run_backup(cli, _url(source), store)
    assert restored_state(cli, store, manifest["id"], tmp_path / "r.db") == START


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_a_writer_in_exclusive_locking_mode_is_a_clear_error(tmp_path: Path, mode: str) -> None:
    """A connection in `locking_mode=EXCLUSIVE` that wrote keeps its lock until it closes: the
    backup waits (about 60 s), then exits 1 naming that mode, with nothing in the store."""
    source = bank(tmp_path / "app.db", mode)
    store = tmp_path / "store"
    with exclusive_mode(source, "write"):
        result = emrops_proc("backup", "run", "--db", _url(source), "--store", str(store))
    assert result.returncode == 1, result.stderr
    assert "stayed locked by another process" in result.stderr
    assert "`PRAGMA locking_mode=EXCLUSIVE`" in result.stderr
    assert "Try: find the process with `fuser" in result.stderr
    assert "Traceback" not in result.stderr
    assert store_names(store) == [".lock"]
