"""An SQLite file replaced under a running server: refused at once, then reopened.

``emrops backup restore`` restores an open database in place and needs none of this. But a file
can also be replaced by rename (a copy moved over it, a deploy script, an older emrops). A
server that kept its connections would go on serving the old, deleted file: stale reads, and
writes answered 201 and then lost with it. So a runtime on an SQLite file remembers the file it
opened (device and inode), and its :class:`FileGuard` adds two pool events to its engine:

- **checkout**: the path must still name that file, else the request gets
  :class:`FileReplaced` (a 503 ``database_unavailable``). One ``stat`` per checkout.
- **connect**: a new connection must be on that file too, so a pool that grows after a
  replacement never holds connections to two different files.

The runtime's poller (every 0.5 s) and SIGHUP notice the replacement and reopen (see
``SimState.reopen_if_replaced``): wait for the old file's connections to come back, close them,
remove the old file's ``-wal``/``-shm`` if they are still at the path, then open the new file.

Why the side files: SQLite notices on close that a WAL database was moved or unlinked and then
neither checkpoints nor deletes its ``-wal``/``-shm`` (so it never deletes a new file's by
name). They stay at the path, and the next connection to the new file would replay the *old*
file's WAL into it. Which side files are the old file's is known for sure: they are the ones
this process still holds open through its connections to the old file
(:func:`held_side_files`, read before those connections close). Side files this process does
not hold belong to someone else (the new file, opened by another process) and are left alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emrops.errors import DatabaseError


@dataclass(frozen=True)
class FileId:
    """Which file a path named: device and inode."""

    dev: int
    ino: int


class FileReplaced(DatabaseError):
    """The SQLite file this server opened is no longer the one at its path."""


def file_id(path: Path) -> FileId | None:
    """The identity of the file at ``path`` now (None when there is none)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return FileId(st.st_dev, st.st_ino)


class FileGuard:
    """The file a runtime opened, and the pool events that refuse any other (module doc).

    When the guard first sees the file replaced, it notes which ``-wal``/``-shm`` at the path
    this process holds open: the connection being refused still has them, so they are known
    to be the old file's even if every old connection is closed before the reopen."""

    def __init__(self, path: Path, opened: FileId):
        self.path = path
        self.opened = opened
        self._lock = threading.Lock()
        self._left_behind: list[tuple[Path, FileId]] | None = None

    def install(self, engine: Engine) -> None:
        # First of the connect listeners: a connection to a replacing file is refused (and
        # closed) before anything reads through it. Reading would open the old file's WAL
        # still at the path, and closing would then checkpoint that WAL into the new file.
        sa.event.listen(engine, "connect", self.check, insert=True)
        sa.event.listen(engine, "checkout", self.check)

    def replaced(self) -> bool:
        """Whether the path no longer names the opened file (replaced or removed)."""
        return file_id(self.path) != self.opened

    def check(self, *_args: Any) -> None:
        """Raise FileReplaced (a 503 for a request) once the path names another file."""
        now = file_id(self.path)
        if now == self.opened:
            return
        self.left_behind()
        what = "removed" if now is None else "replaced"
        raise FileReplaced(
            f"the database file {self.path} was {what} under the server; "
            "it reopens the file at that path",
            hint="requests are refused until then (503); a restore with "
            "`emrops backup restore` copies in place and needs no reopen",
        )

    def left_behind(self) -> list[tuple[Path, FileId]]:
        """The old file's side files at the path (noted the first time this is asked, which
        must be while a connection to the old file is still open)."""
        with self._lock:
            if self._left_behind is None:
                self._left_behind = held_side_files(self.path)
            return list(self._left_behind)


def held_side_files(path: Path) -> list[tuple[Path, FileId]]:
    """The ``-wal``/``-shm`` at ``path`` that this process has open (through its connections
    to the file that was at ``path``), with their identities. Empty where the open files of a
    process cannot be listed (no ``/proc/self/fd`` or ``/dev/fd``)."""
    held = _held_file_ids()
    found = []
    for suffix in ("-wal", "-shm"):
        side = Path(f"{path}{suffix}")
        side_id = file_id(side)
        if side_id is not None and side_id in held:
            found.append((side, side_id))
    return found


def remove_side_files(files: list[tuple[Path, FileId]]) -> list[Path]:
    """Remove each file still at its path with the same identity; returns those removed."""
    removed = []
    for side, side_id in files:
        if file_id(side) == side_id:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(side)
                removed.append(side)
    return removed


def _held_file_ids() -> set[FileId]:
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        held = set()
        for name in names:
            try:
                st = os.fstat(int(name))
            except (OSError, ValueError):
                continue  # closed meanwhile (e.g. the listing's own descriptor)
            held.add(FileId(st.st_dev, st.st_ino))
        return held
    return set()
