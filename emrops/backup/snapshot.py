"""Consistent snapshots of a SQLite database, streamed.

First choice: :class:`~emrops.backup.walimage.LiveImage`, the database image of one read
transaction read straight from the main file and the WAL, in one pass and without a scratch
copy (writers keep going; see walimage.py for why it is consistent). When the files are not
in a shape it reads, the online backup API in one step (``backup(pages=-1)``) copies into a
scratch file instead: one step holds a read transaction for the whole copy, so writers keep
going and the copy cannot be restarted and starved the way the stepped API can.
Either way the row counts are read in the same snapshot as the pages.

PostgreSQL snapshots are in pgdump.py (kept apart so SQLite backups never import SQLAlchemy).
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from emrops.backup.codec import Progress, no_progress
from emrops.backup.walimage import (
    CHUNK_PAGES,
    CUT_SHORT_HINT,
    PAGE_COUNT_HINT,
    LiveImage,
    PageCountMismatch,
    Restarted,
    SourceCutShort,
    Unreadable,
    header_count,
    names_file,
)
from emrops.db.appdefs import register_stand_ins
from emrops.db.sqlite_file import (
    NOT_A_FILE_HINT,
    SCHEMA_PARSE_HINT,
    check_one_name,
    check_same_file,
    check_side_files,
    not_a_file,
    open_sqlite,
    quote_ident,
    schema_parse_error,
    schema_parse_text,
    side_file_of,
)
from emrops.errors import DatabaseError, EmropsError, UsageError
from emrops.logs import get_logger
from emrops.scratch import restore_scratch_prefix, scratch_file, sweep, sweep_tmp

SQLITE_HEADER = b"SQLite format 3\x00"
LIVE_ATTEMPTS = 3  # direct reads of a SQLite image before falling back to the backup API
log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class Snapshot:
    row_counts: dict[str, int]
    schema_revision: str | None
    engine_info: dict[str, Any] = field(default_factory=dict)
    stream: IO[bytes] | None = None  # the bytes to back up (SQLite image or pg_dump output)
    size: int | None = None  # of the stream, when known


def check_sqlite_file(path: Path) -> None:
    """Refuse a missing file or one that is not an SQLite database, with a clear message."""
    if not path.exists():
        raise UsageError(f"database file not found: {path}", hint="check the --db path")
    kind = not_a_file(path)
    if kind is not None:
        raise UsageError(f"{path} is {kind}, not a database file", hint=NOT_A_FILE_HINT)
    with path.open("rb") as handle:
        header = handle.read(16)
    if not header:
        # SQLite takes a 0-byte file for an empty database: a backup of it would be an empty
        # image that verifies. A database the app uses is never 0 bytes (a truncated or
        # mistyped file is), so this is refused, never published.
        raise UsageError(
            f"{path} is empty (0 bytes): there is no database in it to back up",
            hint="check that --db (or EMROPS_DB_URL) points at the EMRsim database file "
            "(`emrops sim init-db` creates one)",
        )
    side = side_file_of(path)
    if header != SQLITE_HEADER and side is not None:
        raise UsageError(
            f"{path} is the {side[1]} file of the database {side[0]}, not a database",
            hint=f"back up {side[0]} itself (its {side[1]} is read with it)",
        )
    if header != SQLITE_HEADER:
        raise UsageError(
            f"{path} is not an SQLite database",
            hint="check that --db (or EMROPS_DB_URL) points at the EMRsim database file",
        )


def lenient_text(data: bytes) -> str:
    """Text SQLite hands back, decoded even when it is not UTF-8 (an app written in C may name
    a table with any bytes): the invalid bytes become ``\\xff`` escapes."""
    return data.decode("utf-8", "backslashreplace")


def _table_rows(conn: sqlite3.Connection) -> list[tuple[bytes, bool, bytes]]:
    """(name as SQLite's UTF-8 bytes, virtual, sql) of each user table, by name."""
    before = conn.text_factory
    conn.text_factory = bytes
    try:
        rows = conn.execute(
            # Only SQLite's own tables start with "sqlite_" (any case); LIKE 'sqlite_%' also
            # skipped user tables such as "sqliteData" ('_' matches any character), whose rows
            # verify then never compared.
            "SELECT name, rootpage = 0, coalesce(sql, '') FROM sqlite_master "
            "WHERE type = 'table' AND lower(substr(name, 1, 7)) <> 'sqlite_' ORDER BY name"
        ).fetchall()
    finally:
        conn.text_factory = before
    return [(bytes(n), bool(v), bytes(q)) for n, v, q in rows]


def sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    """User table names (a name that is not UTF-8 with its invalid bytes escaped)."""
    return [lenient_text(name) for name, _virtual, _sql in _table_rows(conn)]


WITHOUT_ROWID = re.compile(rb"\bWITHOUT\s+ROWID\s*;?\s*$", re.IGNORECASE)


def _count_by_pages(conn: sqlite3.Connection, name: bytes, sql: bytes, key: str) -> int:
    """Rows of a table whose name is not UTF-8: Python cannot put such a name into a statement
    (it encodes SQL as strict UTF-8), so its b-tree's cells are counted through dbstat, which
    takes the name as a parameter. A table b-tree holds its rows in its leaf cells; a WITHOUT
    ROWID table's b-tree holds them in every cell."""
    kinds = "('leaf', 'internal')" if WITHOUT_ROWID.search(sql) else "('leaf')"
    try:
        cells, pages = conn.execute(
            f"SELECT coalesce(sum(ncell), 0), count(*) FROM dbstat WHERE name = CAST(? AS TEXT) "
            f"AND pagetype IN {kinds}",
            (name,),
        ).fetchone()
        found = conn.execute(
            "SELECT count(*) FROM dbstat WHERE name = CAST(? AS TEXT)", (name,)
        ).fetchone()[0]
    except sqlite3.OperationalError as exc:
        raise DatabaseError(
            f"cannot count the rows of table {key!r} (its name is not UTF-8): {exc}",
            hint="this SQLite has no dbstat table (SQLITE_ENABLE_DBSTAT_VTAB); rename the "
            "table to a UTF-8 name in the app, or run emrops with an sqlite3 that has it",
        ) from exc
    if not found:  # a UTF-16 database: the bytes are not its text
        raise DatabaseError(
            f"cannot count the rows of table {key!r}: its name is not valid text in the "
            "database's encoding",
            hint="rename the table to a valid name in the app that made it",
        )
    return int(cells) if pages else 0


def sqlite_facts(conn: sqlite3.Connection) -> tuple[dict[str, int], str | None]:
    """Row count per table and the Alembic revision of an open SQLite database (stand-ins for
    the app's own collations: counting does not depend on their order). A table whose name is
    not UTF-8 is counted under its name with the invalid bytes escaped (``bad\\xffname``)."""
    register_stand_ins(conn)
    counts = {}
    tables = []
    for raw, virtual, sql in _table_rows(conn):
        t = lenient_text(raw)
        tables.append(t)
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            if virtual:
                log.warning("virtual table %s not counted: its name is not UTF-8", t)
            else:
                counts[t] = _count_by_pages(conn, raw, sql, t)
            continue
        try:
            counts[t] = int(conn.execute(f"SELECT count(*) FROM {quote_ident(t)}").fetchone()[0])
        except sqlite3.OperationalError as exc:
            # a virtual table whose module only the application loads (its rows, if it stores
            # any, are in ordinary shadow tables, which are counted): not countable here
            if "no such module" in str(exc):
                log.info("table %s not counted: %s", t, exc)
            elif virtual:
                # a module this SQLite has, in an older version than the one that wrote the
                # table (FTS5 with secure-delete or contentless_delete, SQLite 3.42+, says
                # "invalid fts5 file format (found 5, expected 4)"): the pages are copied as
                # they are and its shadow tables counted; never act on its "run 'rebuild'"
                log.warning(
                    "virtual table %s not counted: %s (SQLite %s here; its rows are in its "
                    "shadow tables, which are counted)",
                    t,
                    exc,
                    sqlite3.sqlite_version,
                )
            else:
                raise
    revision = None
    if "alembic_version" in tables:
        row = conn.execute('SELECT "version_num" FROM "alembic_version"').fetchone()
        revision = row[0] if row else None
    return counts, revision


@contextlib.contextmanager
def sqlite_snapshot(
    path: Path,
    scratch_dir: Path | None = None,
    *,
    live: bool = True,
    progress: Progress = no_progress,
) -> Iterator[Snapshot]:
    """A consistent image of the SQLite database at ``path`` as ``Snapshot.stream``.

    ``live=False`` skips the direct read and uses the backup API. Raises
    walimage.Restarted when the WAL restarted during the read (read it again).
    """
    check_sqlite_file(path)
    check_side_files(path)
    sweep_tmp(scratch_dir)  # scratch left by killed runs of any command
    # a killed restore onto this file
    sweep(path.parent, restore_scratch_prefix(path), ".tmp")
    image = None
    if live:
        try:
            image = LiveImage(path).open()
            counts, revision = sqlite_facts(image.db)
            info = _info(image.db, "wal-image" if image.wal else "file-image")
        except Unreadable as exc:
            if image is not None:
                image.close()
            image = None
            log.info("reading %s directly is not possible (%s); using the backup API", path, exc)
        except sqlite3.DatabaseError as exc:
            if image is not None:
                image.close()
            raise _sqlite_error(path, None, exc) from exc
    # Writers go on beside a WAL reader. A rollback-journal image is copied out so that the
    # lock ends early; that needs the database's size free in the scratch folder, and without
    # it the image is read under the lock, as before (writers wait for the whole backup).
    if image is not None and (image.wal or not _room_for(image, scratch_dir)):
        if not image.wal:
            log.warning(
                "%s: the scratch folder %s has less than %d bytes free, so the database is "
                "read under its lock and the app's writers wait until the backup is written "
                "(set TMPDIR to a folder with room to avoid that)",
                path, scratch_dir or tempfile.gettempdir(), image.size,
            )  # fmt: skip
        with image:
            yield Snapshot(counts, revision, info, stream=image, size=image.size)  # type: ignore[arg-type]
            _warn_if_replaced(path, image.db_fd)
        return
    if image is not None:
        with _copied_out(image, path, scratch_dir, progress) as (stream, size):
            yield Snapshot(counts, revision, info, stream=stream, size=size)
        return
    with _backup_api_copy(path, scratch_dir) as snap:
        yield snap


def use_sqlite_snapshot(
    path: Path,
    scratch_dir: Path | None,
    use: Callable[[Snapshot], T],
    progress: Progress = no_progress,
) -> tuple[Snapshot, T]:
    """Run ``use`` on a consistent image of the SQLite database at ``path`` (it reads
    ``Snapshot.stream``); the image is read again when the WAL restarted under the reads, and
    after LIVE_ATTEMPTS such restarts the backup API makes it."""
    for attempt in range(LIVE_ATTEMPTS + 1):
        try:
            with sqlite_snapshot(
                path, scratch_dir, live=attempt < LIVE_ATTEMPTS, progress=progress
            ) as snap:
                result = use(snap)
            return snap, result
        except Restarted as exc:
            log.info("reading %s again: %s", path, exc)
    raise AssertionError("unreachable: the last attempt uses the backup API")


SCRATCH_MARGIN = 64 * 1024 * 1024  # left free beside the copy (logs, the app's own temp files)


def _room_for(image: LiveImage, scratch_dir: Path | None) -> bool:
    folder = Path(scratch_dir or tempfile.gettempdir())
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return True  # a missing folder is named by the copy's own error
    return free >= image.size + SCRATCH_MARGIN


@contextlib.contextmanager
def _copied_out(
    image: LiveImage, path: Path, scratch_dir: Path | None, progress: Progress
) -> Iterator[tuple[IO[bytes], int]]:
    """The image of a rollback-journal database, copied to a private scratch file (0600) under
    the read transaction, which is then ended: its SHARED lock keeps every writer of the app
    out, so it must not last through compression, encryption and upload (on a slow store,
    minutes). The copy is read with every check of LiveImage.read (page count, whole pages)."""
    folder = Path(scratch_dir or tempfile.gettempdir())
    with image, scratch_file(folder, "emrops-snapshot-", ".db") as scratch:
        try:
            out = scratch.open("wb")
        except OSError as exc:
            raise _copy_error(path, folder, exc) from exc
        with out:
            done = 0
            while chunk := image.read(CHUNK_PAGES * image.page_size):  # its errors are its own
                try:
                    out.write(chunk)
                    if done + len(chunk) >= image.size:
                        out.flush()  # a full disk shows here, not in close()
                except OSError as exc:
                    raise _copy_error(path, folder, exc) from exc
                done += len(chunk)
                progress("copy", done, image.size)
        _warn_if_replaced(path, image.db_fd)
        image.close()  # the writers go on from here
        with scratch.open("rb") as stream:
            yield stream, image.size


def _copy_error(path: Path, folder: Path, exc: OSError) -> EmropsError:
    return EmropsError(
        f"cannot copy {path} into {folder}: {exc.strerror or exc} (is the disk full?); "
        "nothing was published",
        hint="free space in the scratch folder, or set TMPDIR to a larger one",
    )


@contextlib.contextmanager
def _backup_api_copy(path: Path, scratch_dir: Path | None) -> Iterator[Snapshot]:
    folder = Path(scratch_dir or tempfile.gettempdir())
    with scratch_file(folder, "emrops-snapshot-", ".db") as scratch:
        # The header is read through a descriptor opened before the connection and closed after
        # it: closing any descriptor of a file drops every POSIX lock this process holds on it,
        # the connection's SHARED lock (which keeps writers out) included.
        header_fd = os.open(path, os.O_RDONLY)
        try:
            check_one_name(path, header_fd)
            source = open_sqlite(path, mode="ro", timeout=30, isolation_level=None)
            try:
                check_same_file(source, path)  # the page count below is this handle's
                # One read transaction around the copy: the page count SQLite reports for the
                # named file, its header (rollback journal) and the copy all see one state.
                source.execute("BEGIN")
                expected = int(source.execute("PRAGMA page_count").fetchone()[0])
                wal = source.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                header = None if wal else header_count(os.pread(header_fd, 100, 0))
                if not wal:  # a WAL may hold the pages the file lacks; the live read checks it
                    _check_whole_file(path, header_fd, expected, source)
                target = open_sqlite(scratch, mode="rw")
                try:
                    source.backup(target, pages=-1)
                    source.execute("COMMIT")
                    counts, revision = sqlite_facts(target)
                    info = _info(target, "backup-api")
                finally:
                    target.close()
            finally:
                source.close()
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(path, folder, exc) from exc
        else:
            _warn_if_replaced(path, header_fd)
        finally:
            os.close(header_fd)
        for named, where in ((expected, "SQLite reports"), (header, "its header says")):
            if named is not None and named != info["page_count"]:
                raise PageCountMismatch(
                    f"the copy of {path} has {info['page_count']} pages but {where} {named}: "
                    "not publishing it",
                    hint=PAGE_COUNT_HINT.format(path=path),
                )
        with scratch.open("rb") as stream:
            yield Snapshot(counts, revision, info, stream=stream, size=scratch.stat().st_size)


def _warn_if_replaced(path: Path, fd: int) -> None:
    # The image is the file we opened, whole and consistent: a deploy that renames another
    # file over the path, or a delete, does not touch it. Published, but said: the path now
    # names another database (or none) than the one backed up.
    if not names_file(path, fd):
        log.warning(
            "%s was replaced or deleted during the backup: the backup holds the database as it "
            "was when the backup began, not the file at that path now",
            path,
        )


def _check_whole_file(path: Path, fd: int, pages: int, conn: sqlite3.Connection) -> None:
    """A rollback-journal file must hold all its pages whole (see LiveImage._check_whole_pages):
    the backup API, like any reader, would copy the missing bytes as zeros."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    size = os.fstat(fd).st_size
    if size < pages * page_size:
        raise SourceCutShort(
            f"cannot back up {path}: it is cut short (page {size // page_size + 1} of {pages}, "
            f"{page_size} bytes each, is not whole in the file, which ends at byte {size}); "
            "SQLite would read the missing bytes as zeros, so nothing was published",
            hint=CUT_SHORT_HINT.format(path=path),
        )


def _info(conn: sqlite3.Connection, method: str) -> dict[str, Any]:
    return {
        "sqlite_version": sqlite3.sqlite_version,
        "page_size": conn.execute("PRAGMA page_size").fetchone()[0],
        "page_count": conn.execute("PRAGMA page_count").fetchone()[0],
        "snapshot": method,
        # SQLite enforces foreign keys only on connections that ask for it, so a source can
        # hold violations; verify compares the image's count with this one instead of failing
        # (and restore refusing) every faithful backup of such a source.
        "foreign_key_violations": foreign_key_violations(conn),
    }


def foreign_key_violations(conn: sqlite3.Connection) -> int | None:
    """Rows ``PRAGMA foreign_key_check`` reports (counted, not kept: there may be many); None
    when SQLite cannot check them (a foreign key naming a missing table or column: "foreign
    key mismatch"), which the source's own schema causes and a faithful copy repeats."""
    before = conn.text_factory
    conn.text_factory = bytes  # only counted: the table names it gives need not be UTF-8
    try:
        return sum(1 for _row in conn.execute("PRAGMA foreign_key_check"))
    except sqlite3.DatabaseError as exc:
        if "foreign key mismatch" in str(exc):
            return None
        raise
    finally:
        conn.text_factory = before


def _sqlite_error(path: Path, folder: Path | None, exc: sqlite3.DatabaseError) -> EmropsError:
    text = str(exc)
    if folder is not None and ("disk is full" in text or "disk I/O error" in text):
        return EmropsError(
            f"cannot snapshot {path} into {folder}: {text} (is the disk full?)",
            hint="free space in the scratch folder, or set TMPDIR to a larger one",
        )
    if "not a database" in text:
        return UsageError(f"{path} is not an SQLite database", hint="check the --db path")
    parse = schema_parse_error(exc)
    if parse is not None:
        # Not "damaged": the usual cause is an app on a newer SQLite, and the damage hint
        # (restore the last good backup) would throw away a healthy database's newer data.
        return DatabaseError(
            f"cannot back up {path}: {schema_parse_text(parse)}; nothing was published",
            hint=f"{SCHEMA_PARSE_HINT}; until then copy it with the app's own SQLite "
            f'(`sqlite3 {shlex.quote(str(path))} ".backup copy.db"`); do not restore an older '
            "backup over it because of this error",
        )
    if "malformed" in text:
        # a damaged source (truncated, overwritten pages): a backup of it would be damaged too
        return DatabaseError(
            f"cannot snapshot {path}: {text}; the source is damaged, so no backup was taken",
            hint=f"check it with `sqlite3 {path} 'PRAGMA integrity_check'`; restore the last "
            "good backup (`emrops backup restore --latest`), or salvage rows with "
            "`sqlite3 ... .recover` into a new file",
        )
    if "database is locked" in text:
        # a writer holding an EXCLUSIVE lock (a long write transaction, or a connection in
        # exclusive locking mode, which keeps it until it closes) past the timeout
        return DatabaseError(
            f"cannot snapshot {path}: it stayed locked by another process (a write transaction "
            "that does not end, or a connection in `PRAGMA locking_mode=EXCLUSIVE`, which "
            "keeps the lock until it closes); nothing was published",
            hint=f"find the process with `fuser {path}`, let its transaction finish (or have it "
            "use locking_mode=NORMAL), and run the backup again",
        )
    return DatabaseError(f"cannot snapshot {path}: {text}")
