"""The swap step of an SQLite restore: put a verified image's data into the target file.

An existing, readable target is restored **in place**: the image is copied into the target
through SQLite's online backup API, as one write transaction on the target. The file keeps its
inode, owner, group and mode, and every process that has it open (a running ``sim serve``)
sees the old data until that transaction commits and the restored data from then on, with no
reopen, signal or restart. The target's own ``-wal``/``-shm`` stay in use by the target (they
are never deleted or mixed with another file's); a crash mid-copy rolls the transaction back
like any other write.

What SQLite needs for that, arranged here on the image (a scratch copy, never the backup):

- a target in WAL mode only takes pages of its own size, so an image with another page size is
  rewritten (``VACUUM``) at the target's page size first;
- the image's journal mode is set to the target's (WAL or rollback), so the copy does not
  switch the target's mode.

A target that does not exist, or is not a readable database (moved aside first), gets the image
by rename instead (:func:`publish_by_rename`); a file moved aside hands on its owner, group and
mode.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from emrops.atomic import fsync_dir
from emrops.db.sqlite_file import header_page_size, open_sqlite
from emrops.errors import DatabaseError

BUSY_TIMEOUT_SECONDS = 30.0
CHECKPOINT_WAIT_MS = 2000  # the checkpoint after the copy is a courtesy: it never waits long
SIDE_FILES = ("-journal", "-wal", "-shm")  # what SQLite keeps beside a database file


ENCODINGS = {1: "UTF-8", 2: "UTF-16le", 3: "UTF-16be"}  # header bytes 56-59


def encoding_name(code: int) -> str:
    """The name of a header's text-encoding code (0: nothing written yet, SQLite's UTF-8)."""
    return ENCODINGS.get(code or 1, f"unknown encoding {code}")


def text_encoding(path: Path) -> str:
    """The text encoding the database header of ``path`` records."""
    with open(path, "rb") as handle:
        head = handle.read(60)
    return encoding_name(int.from_bytes(head[56:60], "big") if len(head) == 60 else 0)


def encoding_refusal(image: str, target: Path) -> str | None:
    """Why an image of text encoding ``image`` cannot be copied into ``target`` in place (None
    when it can). SQLite fixes a connection's encoding when it first reads the schema, so every
    process that has the target open would fail each query after the copy ("attached databases
    must use the same text encoding as main database") until it is restarted; and no pragma
    converts a database's encoding."""
    have = text_encoding(target)
    if have == image:
        return None
    return (
        f"the backup is a {image} database and {target} is {have}: SQLite cannot change the "
        "text encoding of a database in place (every process that has it open, a running sim "
        "server, would fail each query until restarted)"
    )


def header_says_wal(path: Path) -> bool:
    """Whether the database header of ``path`` marks it as a WAL database (bytes 18-19)."""
    with open(path, "rb") as handle:
        head = handle.read(20)
    return len(head) == 20 and head[18] == 2


def restore_in_place(
    image: Path,
    target: Path,
    *,
    wal: bool | None = None,
    busy_timeout: float = BUSY_TIMEOUT_SECONDS,
) -> None:
    """Copy the SQLite database ``image`` into the existing database ``target`` in one write
    transaction (see the module doc). ``image`` may be changed (page size, journal mode).
    ``wal``: the journal mode the target had before restore touched it (None: as it is now);
    a rollback-journal target switched to WAL meanwhile is switched back when nothing else
    has it open.

    Raises DatabaseError when the target's write lock is not free within ``busy_timeout``
    seconds (nothing changed) or SQLite refuses the copy."""
    dest = open_sqlite(target, mode="rw", timeout=busy_timeout, isolation_level=None)
    try:
        dest_mode = str(dest.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        dest_page = int(dest.execute("PRAGMA page_size").fetchone()[0])
        want_wal = dest_mode == "wal" if wal is None else wal
        _match_image(image, target, wal=want_wal, page_size=dest_page)
        source = open_sqlite(image, mode="rw", isolation_level=None)
        try:
            source.backup(dest, pages=-1, progress=_give_up_when_busy(target, busy_timeout))
        except sqlite3.Error as exc:
            raise DatabaseError(
                f"could not copy the restored data into {target}: {exc}; the target is unchanged"
            ) from exc
        finally:
            source.close()
        if dest_mode == "wal":
            # Fold the copy into the file now rather than leave a WAL as large as the database
            # to the next checkpoint. A reader still on the old data makes this partial; the
            # target's own connections finish it later, so the outcome is not checked.
            with contextlib.suppress(sqlite3.Error):
                dest.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
                dest.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                if not want_wal:
                    # Needs the only connection; with another one open it stays WAL.
                    dest.execute("PRAGMA journal_mode = DELETE").fetchall()
    finally:
        dest.close()


def _give_up_when_busy(target: Path, busy_timeout: float) -> Callable[[int, int, int], None]:
    # sqlite3 retries a busy step forever; the target's busy handler has already waited
    # busy_timeout seconds when a step reports BUSY/LOCKED, so the first one ends the copy.
    def progress(status: int, _remaining: int, _total: int) -> None:
        if status in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            # In rollback-journal mode the copy needs every reader gone too: a read transaction
            # left open (a DB browser, a stuck report) holds it up as surely as a writer.
            raise DatabaseError(
                f"{target} stayed locked by another writer for {busy_timeout:.0f}s, or by a "
                "reader whose transaction does not end (a rollback-journal file takes a write "
                "only when no one reads); nothing was restored",
                hint=f"find the processes with `fuser {target}`; stop what is writing to it "
                "(maintenance mode stops the sim server's writes) or holds a transaction open "
                "on it (a database browser, a long query), and run the restore again",
            )

    return progress


def prepare_image(image: Path, target: Path, *, wal: bool) -> None:
    """Give ``image`` the page size and journal mode of ``target`` now, before anything of the
    target changes (maintenance, safety backup): a rewrite SQLite refuses then stops the restore
    with the target untouched. :func:`restore_in_place` checks again under the write lock."""
    page_size = _page_size_of(target)
    if page_size:
        _match_image(image, target, wal=wal, page_size=page_size)


def _page_size_of(path: Path) -> int:
    with open(path, "rb") as handle:
        return header_page_size(handle.read(18))


def _app_definitions(exc: sqlite3.Error) -> str | None:
    """The collation or function named by ``exc`` when it is one only the app defines."""
    text = str(exc)
    for prefix in ("no such collation sequence: ", "no such function: ", "unknown function: "):
        if text.startswith(prefix):
            return text
    return None


def _match_image(image: Path, target: Path, *, wal: bool, page_size: int) -> None:
    try:
        _rewrite_image(image, target, wal=wal, page_size=page_size)
    except sqlite3.Error as exc:
        missing = _app_definitions(exc)
        have = _page_size_of(image)
        if missing is None:
            full = "disk is full" in str(exc)
            raise DatabaseError(
                f"could not rewrite the restored data at the page size ({page_size} bytes) and "
                f"journal mode of {target}: {exc}; nothing was restored",
                hint=f"free space in {target.parent}: the rewrite (VACUUM) needs about twice "
                "the restored database there, beside the target"
                if full
                else None,
            ) from exc
        # VACUUM rebuilds every index: an index ordered by the app's collation (or keyed on
        # its function) cannot be built without it, and a stand-in would order it wrongly.
        raise DatabaseError(
            f"cannot restore into {target} in place: the backup's pages are {have} bytes and "
            f"the target's {page_size}, and changing the page size rebuilds every index "
            f"(VACUUM), which fails here with '{missing}': the schema uses a collation or "
            "function only the application defines; nothing was restored",
            hint="restore into a new file (--target NEW.db, with the backup's page size) and "
            "point the apps at it; or, with the apps stopped, give the target the backup's page "
            f"size from the application itself (PRAGMA journal_mode=DELETE; PRAGMA page_size="
            f"{have}; VACUUM; then journal_mode=WAL if it was) and run the restore again",
        ) from exc


def _rewrite_image(image: Path, target: Path, *, wal: bool, page_size: int) -> None:
    conn = open_sqlite(image, mode="rw", isolation_level=None)
    try:
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        if size != page_size:
            # VACUUM applies a new page size only outside WAL mode.
            conn.execute("PRAGMA journal_mode = DELETE").fetchall()
            conn.execute(f"PRAGMA page_size = {int(page_size)}")
            conn.execute("VACUUM")
            mode = "delete"
            size = int(conn.execute("PRAGMA page_size").fetchone()[0])
            if size != page_size and wal:
                # SQLite puts at most 32 reserved bytes in a 512-byte page (it takes 1024
                # instead), and a WAL file only takes pages of its own size: the copy would
                # fail with a bare "attempt to write a readonly database".
                with open(image, "rb") as handle:
                    reserve = handle.read(21)[20]
                raise DatabaseError(
                    f"the backup's pages carry {reserve} reserved bytes, which SQLite cannot "
                    f"fit in the {page_size}-byte pages of the WAL database {target}; nothing "
                    "was restored",
                    hint="restore into a new file (--target NEW.db) and point the apps at it",
                )
        if wal and mode != "wal":
            conn.execute("PRAGMA journal_mode = WAL").fetchall()
        elif not wal and mode == "wal":
            conn.execute("PRAGMA journal_mode = DELETE").fetchall()
    finally:
        conn.close()


def publish_by_rename(image: Path, target: Path, like: os.stat_result | None) -> list[str]:
    """Rename ``image`` over ``target`` (which no process has open as a database: it is missing
    or was moved aside). Stale ``-wal``/``-shm``/``-journal`` beside the target are removed
    first so SQLite never replays them onto the new file. ``like``: the stat of the file that
    was there, whose owner, group and mode the new file takes. Returns notes for the user."""
    notes = keep_owner_and_mode(image, like) if like is not None else []
    with open(image, "rb") as handle:
        os.fsync(handle.fileno())
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}{suffix}")
    os.replace(image, target)
    fsync_dir(target.parent)
    return notes


def move_aside(path: Path, aside: Path) -> None:
    """Rename ``path`` to ``aside`` together with its ``-journal``/``-wal``/``-shm``: they may
    hold the rest of its data (a journal to roll back, committed WAL frames), which salvaging
    the moved file needs. Each side file is hard-linked under its new name before the file is
    renamed and unlinked after it, so a crash at any point leaves the moved file with them
    (publish_by_rename later removes what is left beside the target)."""
    moved = []
    for suffix in SIDE_FILES:
        source, dest = Path(f"{path}{suffix}"), Path(f"{aside}{suffix}")
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        try:
            os.link(source, dest)
        except FileNotFoundError:
            continue
        except OSError:  # a file system without hard links: renamed after the file instead
            moved.append((source, dest, False))
            continue
        moved.append((source, dest, True))
    os.replace(path, aside)
    for source, dest, linked in moved:
        if linked:
            source.unlink()
        else:
            os.replace(source, dest)
    fsync_dir(aside.parent)


def keep_owner_and_mode(path: Path, like: os.stat_result) -> list[str]:
    """Give ``path`` the owner, group and permission bits of ``like``. Changing the owner
    needs root; when that is refused the file keeps ours and a note says so."""
    notes = []
    try:
        os.chown(path, like.st_uid, like.st_gid)
    except PermissionError:
        notes.append(
            f"could not give {path.name} owner {like.st_uid}:{like.st_gid} (needs root); "
            f"it is owned by {os.geteuid()}:{os.getegid()}"
        )
    os.chmod(path, like.st_mode & 0o7777)
    return notes
