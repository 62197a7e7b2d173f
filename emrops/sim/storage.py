"""A database whose disk is full: named as such, and shown by /ready.

A write that fails because the SQLite volume or PostgreSQL's disk is full was answered like an
unreachable database (503 ``database_unavailable``, "retry shortly") while /ready said
``ready``: clients retried into the same wall and the operator's probe saw nothing wrong. Now
such a write gets 503 ``storage_full`` (Retry-After 60), and /ready answers 503 ``not_ready``
with ``storage_full`` for STORAGE_FULL_WINDOW_S after the last one (reads keep working; a
write that succeeds afterwards is not tracked, so /ready recovers at the end of the window).
"""

from __future__ import annotations

import errno
import time

STORAGE_FULL_WINDOW_S = 30.0
STORAGE_FULL_RETRY_AFTER = 60
STORAGE_FULL_MESSAGE = "the database's disk is full: writes fail until space is freed"

_SQLITE_FULL = 13  # SQLITE_FULL: "database or disk is full"
_PG_STATES = {"53100"}  # disk_full (PostgreSQL also reports ENOSPC as 53100 'could not extend')


def is_storage_full(exc: BaseException | None) -> bool:
    """True when ``exc`` or what caused it says the database's storage is full."""
    seen = 0
    while exc is not None and seen < 8:
        orig = getattr(exc, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's error
        for err in (exc, orig):
            if err is None:
                continue
            if getattr(err, "sqlite_errorcode", None) == _SQLITE_FULL:
                return True
            if getattr(err, "sqlstate", None) in _PG_STATES:
                return True
            if isinstance(err, OSError) and err.errno == errno.ENOSPC:
                return True
            if "database or disk is full" in str(err):
                return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class StorageWatch:
    """When a write last failed for lack of space (per database in use)."""

    def __init__(self) -> None:
        self.full_at: float | None = None

    def note_full(self) -> None:
        self.full_at = time.monotonic()

    def recently_full(self) -> bool:
        return self.full_at is not None and time.monotonic() - self.full_at < STORAGE_FULL_WINDOW_S
