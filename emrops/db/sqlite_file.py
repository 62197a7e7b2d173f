"""The one way emrops opens an SQLite file: exactly the file that was named.

Every SQLite open in the package, read-only or not, goes through :func:`open_sqlite` (or
:func:`sqlite_uri` where a library builds the connection itself). It exists because a path
pasted into an SQLite URI unescaped (``file:{path}?mode=ro``) is a different path as soon as it
holds ``#``, ``?`` or ``%``: SQLite cuts ``/srv/a#b/app.db`` at the ``#``, opens ``/srv/a``, and
in a writable mode creates an empty database there. A backup of that is empty and verifies.

What the helper guarantees:

- the path is made absolute and percent-encoded (:meth:`pathlib.Path.as_uri`), so any byte a
  file name can hold (``#``, ``?``, ``%``, spaces, quotes, newlines, unicode) names itself;
- ``mode="ro"`` and ``mode="rw"`` never create a file: a missing file is a
  :class:`MissingDatabase` error naming the path, raised before SQLite is asked;
- after opening, the handle is checked to be the named file (same device and inode as
  ``os.stat`` of the path; a symlink counts as the file it points to);
- a read-only open reads the schema once, so a source SQLite cannot read without writing (a hot
  journal left by a crashed writer, or a WAL whose ``-shm`` cannot be created on a read-only
  mount) fails at once with a clear error and a hint; SQLite is asked (its extended error
  code), not ``os.access``, which says yes to root everywhere.
"""

from __future__ import annotations

import os
import re
import sqlite3
import stat
from pathlib import Path
from typing import Any, Literal

from emrops.db.quoting import quote_ident
from emrops.errors import DatabaseError, EmropsError

__all__ = [
    "SCHEMA_PARSE_HINT",
    "HardLinked",
    "MissingDatabase",
    "check_one_name",
    "check_side_files",
    "foreign_journal",
    "check_same_file",
    "side_file_of",
    "header_page_count",
    "not_a_file",
    "open_sqlite",
    "quote_ident",
    "require_file",
    "schema_parse_error",
    "schema_parse_text",
    "sqlite_uri",
]

Mode = Literal["ro", "rw", "rwc"]


class MissingDatabase(EmropsError):
    """A read of an SQLite file that does not exist (reads never create one)."""


def sqlite_uri(path: str | os.PathLike[str], mode: Mode = "ro", **params: str) -> str:
    """The ``file:`` URI for ``path`` with every special character escaped.

    ``params`` are extra URI parameters (e.g. ``immutable="1"``); values are plain words."""
    absolute = Path(os.path.abspath(os.fspath(path)))
    query = "&".join([f"mode={mode}", *(f"{k}={v}" for k, v in params.items())])
    return f"{absolute.as_uri()}?{query}"


def open_sqlite(
    path: str | os.PathLike[str],
    *,
    mode: Mode = "ro",
    timeout: float = 10.0,
    check_same_thread: bool = True,
    isolation_level: str | None = "",
    **params: str,
) -> sqlite3.Connection:
    """Open the SQLite file at ``path`` and nothing else.

    ``mode``: ``"ro"`` (read-only, the default), ``"rw"`` (read-write, the file must exist) or
    ``"rwc"`` (read-write, created when missing: only for restore targets and scratch copies).
    Raises :class:`MissingDatabase` for a missing file in ``ro``/``rw``, :class:`DatabaseError`
    when SQLite cannot open it or the handle is not the named file."""
    named = Path(os.path.abspath(os.fspath(path)))
    if mode != "rwc":
        require_file(named)
    kwargs: dict[str, Any] = {"timeout": timeout, "check_same_thread": check_same_thread}
    if isolation_level != "":
        kwargs["isolation_level"] = isolation_level
    try:
        conn = sqlite3.connect(sqlite_uri(named, mode, **params), uri=True, **kwargs)
    except sqlite3.Error as exc:
        raise _open_error(named, mode, exc) from exc
    try:
        check_same_file(conn, named)
        if mode == "ro":
            _probe(conn, named)
    except BaseException:
        conn.close()
        raise
    return conn


# Extended result codes (sqlite3.h) of a read-only open that would have to write to recover.
SQLITE_READONLY_ROLLBACK = 776  # a hot journal: SQLite must roll it back before any read
SQLITE_READONLY_CANTINIT = 1288  # WAL: the -shm cannot be created or initialised
SQLITE_READONLY_DIRECTORY = 1544
SQLITE_CANTOPEN = 14


def _probe(conn: sqlite3.Connection, named: Path) -> None:
    """Read the schema once, so a source that SQLite cannot read without writing (a hot journal,
    a WAL whose -shm cannot be made) fails here with a clear error. SQLite is asked rather than
    guessed with os.access, which answers yes to root on any folder and knows nothing of a
    read-only mount. Other errors (not a database, ...) surface where the caller reads, as before.
    """
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", None)
        journal = Path(f"{named}-journal")
        if code == SQLITE_READONLY_ROLLBACK or (
            code == SQLITE_CANTOPEN and journal.exists() and journal.stat().st_size > 0
        ):
            foreign = foreign_journal(named, journal)
            if foreign is not None:
                raise HotJournal(
                    f"cannot read {named}: it has a hot journal ({journal.name}) that may not be "
                    f"its own ({foreign}): either another database's journal copied or renamed "
                    "beside it, which the next read-write open would roll into this file and "
                    "damage it, or the journal of a VACUUM that changed the page size and was "
                    "interrupted, which that open rolls back correctly",
                    hint=FOREIGN_JOURNAL_HINT.format(
                        db=_shell_word(named), journal=_shell_word(journal)
                    ),
                    foreign=foreign,
                ) from exc
            raise HotJournal(
                f"cannot read {named} without changing it: it has a hot journal ({journal.name}) "
                "left by a writer that stopped mid-transaction, and SQLite must roll that back "
                "before anyone reads the file; emrops opens sources read-only and never writes "
                "into them",
                hint=f"open it once read-write where it is writable, as its owner (e.g. "
                f"`sqlite3 {_shell_word(named)} 'PRAGMA quick_check'`), so SQLite rolls the "
                f"journal back, then retry; never delete {journal.name} (that corrupts the "
                "database)",
            ) from exc
        if code in (SQLITE_READONLY_CANTINIT, SQLITE_READONLY_DIRECTORY, SQLITE_CANTOPEN) and (
            Path(f"{named}-wal").exists() or _is_wal(named)
        ):
            raise DatabaseError(
                f"cannot read the WAL database {named}: SQLite cannot create or open its -shm "
                f"file ({exc}); its folder is read-only or not writable by this user",
                hint="read it where its folder is writable, or as its owner; or checkpoint it "
                "(PRAGMA wal_checkpoint(TRUNCATE)) and switch it to journal_mode=DELETE before "
                "mounting it read-only",
            ) from exc


class HotJournal(DatabaseError):
    """A read-only source with a hot journal that SQLite would have to roll back. ``foreign``
    says why the journal cannot be the file's own, when that can be told."""

    def __init__(self, message: str, hint: str | None = None, *, foreign: str | None = None):
        super().__init__(message, hint)
        self.foreign = foreign


JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
FOREIGN_JOURNAL_HINT = (
    "before anything opens it read-write, copy {db} and {journal} together somewhere safe; open "
    "the copy read-write (`sqlite3 COPY 'PRAGMA integrity_check'`, the copy's journal beside "
    "it): if it says ok, that was its journal; if not, the journal is another file's: keep the "
    "original, move {journal} away, and check it again"
)


def header_page_size(head: bytes) -> int:
    """The page size an SQLite header's bytes 16-17 give (1 stands for 65536); 0 when ``head``
    is shorter than that."""
    if len(head) < 18:
        return 0
    size = int.from_bytes(head[16:18], "big")
    return 65536 if size == 1 else size


def foreign_journal(named: Path, journal: Path) -> str | None:
    """Why ``journal`` may not be the rollback journal of the database ``named`` (None when
    nothing says so). A journal records the page size of its database (header bytes 24-27); a
    different one is another database's journal copied or renamed there (rolling it back, as
    any read-write open does, writes that database's pages into this one: malformed), or the
    journal of an interrupted VACUUM that changed the page size (page 1 already rewritten),
    which rolls back correctly. A foreign journal of the same page size cannot be told."""
    try:
        with open(journal, "rb") as handle:
            head = handle.read(28)
        with open(named, "rb") as handle:
            db_head = handle.read(18)
    except OSError:
        return None
    if len(head) < 28 or head[:8] != JOURNAL_MAGIC or len(db_head) < 18:
        return None
    journal_page = int.from_bytes(head[24:28], "big")
    db_page = header_page_size(db_head)
    if journal_page == db_page:
        return None
    return f"it records {journal_page}-byte pages, the database has {db_page}-byte pages"


def _is_wal(named: Path) -> bool:
    try:
        with open(named, "rb") as f:
            head = f.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18] == 2 and head[19] == 2


def _shell_word(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def check_same_file(conn: sqlite3.Connection, named: Path) -> None:
    """Raise DatabaseError unless the main database of ``conn`` is ``named`` (device + inode)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    opened = row[2] if row else ""
    try:
        want = os.stat(named)
        got = os.stat(opened) if opened else None
    except OSError as exc:
        raise DatabaseError(
            f"cannot check which file was opened for {named}: {exc.strerror or exc}"
        ) from exc
    if got is None or (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino):
        raise DatabaseError(
            f"SQLite opened {opened or 'no file'!r} instead of {str(named)!r}",
            hint="report this: the path was not passed to SQLite as named",
        )


def require_file(named: Path) -> None:
    """Raise MissingDatabase unless ``named`` is an existing file (reads never create)."""
    if not named.exists():
        raise MissingDatabase(
            f"SQLite database not found: {named}",
            hint="check the path (emrops does not create a database when reading one; "
            "`emrops sim init-db` creates one)",
        )
    kind = not_a_file(named)
    if kind is not None:
        raise MissingDatabase(
            f"{named} is {kind}, not an SQLite database file", hint=NOT_A_FILE_HINT
        )


NOT_A_FILE_HINT = "an SQLite database is a regular file: point --db at one"
_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_a_file(named: Path) -> str | None:
    """What ``named`` is when it exists and is not a regular file (a symlink counts as what it
    points to), else None. Opening a named pipe waits for a writer: a FIFO passed as a
    database would hang a cron job (and the store lock it holds) forever, so callers refuse
    it before any open."""
    try:
        mode = os.stat(named).st_mode
    except OSError:
        return None
    return next((what for test, what in _KINDS if test(mode)), None)


def _open_error(named: Path, mode: Mode, exc: sqlite3.Error) -> EmropsError:
    return DatabaseError(f"cannot open SQLite database {named}: {exc}")


def header_page_count(path: str | os.PathLike[str]) -> int | None:
    """The page count in the database header of ``path`` (None if the header says it is
    unreliable or the file is too short). The header's count is valid only when its
    version-valid-for number equals its change counter."""
    with open(path, "rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return None
    change_counter = int.from_bytes(head[24:28], "big")
    count = int.from_bytes(head[28:32], "big")
    valid_for = int.from_bytes(head[92:96], "big")
    if count == 0 or valid_for != change_counter:
        return None
    return count


# SQLite parses every CREATE statement of sqlite_master when it loads the schema; one it cannot
# parse fails every statement as "malformed database schema (NAME) - near "X": syntax error".
_SCHEMA_PARSE = re.compile(
    r"malformed database schema \((?P<name>.*)\) - "
    r"(?P<detail>.*(?:syntax error|unrecognized token).*)"
)


def schema_parse_error(exc: BaseException) -> tuple[str, str] | None:
    """``(object name, SQLite's parse error)`` when ``exc`` says SQLite could not parse an entry
    of the schema, else None.

    That is what a database written by a newer SQLite looks like to an older one (a view using
    ``group_concat(x ORDER BY y)``, 3.44; a default of ``1_000``, 3.46): the file is healthy and
    the application that wrote it reads it. It is not what damaged pages look like (those say
    ``database disk image is malformed``, ``invalid rootpage`` ...), though a damaged byte inside
    the statement's text would say the same; so the caller names both possibilities and never
    treats such a file as junk."""
    match = _SCHEMA_PARSE.search(str(exc))
    if match is None:
        return None
    return match.group("name"), match.group("detail")


def schema_parse_text(problem: tuple[str, str]) -> str:
    """The common explanation of a :func:`schema_parse_error`."""
    name, detail = problem
    return (
        f"SQLite {sqlite3.sqlite_version} (the one emrops runs with) cannot parse its "
        f"schema: the definition of {name!r} fails with `{detail}`; the file was most likely "
        "written by a newer SQLite, whose syntax this one does not know (or that definition is "
        "damaged)"
    )


SCHEMA_PARSE_HINT = (
    "run emrops with a Python whose sqlite3 module is at least as new as the application's "
    "SQLite (compare `python -c 'import sqlite3; print(sqlite3.sqlite_version)'` with the app's "
    "`select sqlite_version()`); the file itself is probably healthy"
)


class HardLinked(DatabaseError):
    """A database file with more than one name (hard links)."""


def check_one_name(path: Path, fd: int | None = None, *, doing: str = "back up") -> None:
    """Raise HardLinked when the file at ``path`` (or open as ``fd``) has other names.

    SQLite keeps a database's ``-wal``, ``-shm`` and ``-journal`` beside the *name* it was
    opened by (a symlink is resolved, a hard link cannot be): an app writing through another
    name keeps its committed WAL frames, its locks and its hot journal where a reader of this
    name never looks. A backup through this name was the main file alone (stale, or empty
    when every table was still in the app's WAL), and it verified; a restore in place would
    mix with the app's WAL (sqlite.org/howtocorrupt.html, "multiple links to the same file")."""
    links = os.fstat(fd).st_nlink if fd is not None else os.stat(path).st_nlink
    if links > 1:
        raise HardLinked(
            f"cannot {doing} {path}: the file has {links} names (hard links), and SQLite keeps "
            "the -wal, -shm and -journal of each name apart, so what an app committed through "
            "another name may not be in the file yet; nothing was changed",
            hint=f"find the names with `find / -xdev -samefile {_shell_word(path)}`, remove "
            f"all but the one the app opens, and {doing} that one (a copy to keep is made with "
            '`sqlite3 DB ".backup COPY"`, never with `ln`)',
        )


SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


def side_file_of(path: Path) -> tuple[Path, str] | None:
    """``(database, suffix)`` when ``path`` is named as the ``-wal``, ``-shm`` or ``-journal``
    of a file that exists beside it: SQLite's own file of that database, never one to back up
    or restore over (a database written there is taken for that database's WAL or journal)."""
    name = path.name
    for suffix in SIDE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            base = path.with_name(name[: -len(suffix)])
            if base.is_file():
                return base, suffix
    return None


_ROLES = {"-wal": "write-ahead log", "-shm": "WAL index", "-journal": "rollback journal"}


def check_side_files(path: Path, *, doing: str = "back up") -> None:
    """Raise DatabaseError when the ``-wal``, ``-shm`` or ``-journal`` of ``path`` (named, as
    SQLite names them, after the file a symlink points to) exists and is not a regular file (a
    folder, a FIFO...). SQLite then fails with a misleading "unable to open database file", or
    reads without the file and emrops's own read of it failed with "unexpected
    IsADirectoryError"; a FIFO would block a read for ever."""
    real = os.path.realpath(path)
    for suffix, role in _ROLES.items():
        side = Path(f"{real}{suffix}")
        kind = not_a_file(side)
        if kind is not None:
            raise DatabaseError(
                f"cannot {doing} {path}: {side} is {kind}, where SQLite keeps the database's "
                f"{role} ({suffix} file); nothing was changed",
                hint=f"move {_shell_word(side)} out of the way (it cannot hold SQLite data; "
                "SQLite makes a new file there when it needs one), then run this again",
            )
