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
- a read-only source that has a hot journal or WAL SQLite would have to recover, on a mount it
  cannot write, gets a clear error with a hint instead of "unable to open database file".
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

from emrops.db.quoting import quote_ident
from emrops.errors import DatabaseError, EmropsError

__all__ = [
    "MissingDatabase",
    "check_same_file",
    "header_page_count",
    "open_sqlite",
    "quote_ident",
    "require_file",
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
    except BaseException:
        conn.close()
        raise
    return conn


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
    if named.is_dir():
        raise MissingDatabase(f"{named} is a folder, not an SQLite database file")


def _open_error(named: Path, mode: Mode, exc: sqlite3.Error) -> EmropsError:
    text = str(exc)
    if mode == "ro" and "unable to open" in text:
        for suffix in ("-journal", "-wal"):
            side = Path(f"{named}{suffix}")
            if side.exists() and side.stat().st_size > 0 and not os.access(named.parent, os.W_OK):
                return DatabaseError(
                    f"cannot open {named} read-only: it has a hot {suffix[1:]} file that SQLite "
                    "must recover, and its folder is not writable",
                    hint="open the database once where its folder is writable (or as its owner) "
                    "so SQLite can recover it, then retry",
                )
    return DatabaseError(f"cannot open SQLite database {named}: {text}")


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
