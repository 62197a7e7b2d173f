"""An offline run reads the source in place; this notices any write made to it meanwhile.

Instead of copying the source to a snapshot first (a second copy of the whole database on disk,
written and read again), an offline run reads the file itself, read-only, from several
connections, and holds it to one point in time by checking that nobody wrote to it: SQLite's
``PRAGMA data_version`` on one connection kept open for the whole run changes when any other
connection commits. A run whose source changed fails and removes what it created (its copy could
mix two states, and writes after it started would be missing from the target); ``--online``
exists for a source that keeps being written. ``--resume`` in a new process compares the file's
size and modification time with those journaled at the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emrops.db.sqlite_file import open_sqlite
from emrops.errors import EmropsError

HINT = (
    "stop the app (or turn its maintenance mode on) and run again, or migrate with --online "
    "while it keeps writing"
)


class SourceChanged(EmropsError):
    """The source was written to while an offline run was reading it."""


class SourceGuard:
    """Holds a read-only connection to the source open and reports commits made by others."""

    def __init__(self, path: Path):
        self.path = path
        self.conn = open_sqlite(path, check_same_thread=False)
        self.version = self._version()
        self.fingerprint = fingerprint(path)

    def _version(self) -> int:
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    def changed(self) -> bool:
        return self._version() != self.version

    def check(self) -> None:
        """Raise SourceChanged when anything was committed to the source since the start."""
        if self.changed():
            raise SourceChanged(
                f"the source {self.path} was written to while it was being migrated: the "
                "copy may mix two states, so the run removed what it created",
                hint=HINT,
            )

    def close(self) -> None:
        self.conn.close()


def fingerprint(path: Path) -> dict[str, Any]:
    """Size and modification time of the database file and its WAL (a commit changes one)."""
    out: dict[str, Any] = {}
    for suffix in ("", "-wal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            st = file.stat()
            out[suffix or "db"] = [st.st_size, st.st_mtime_ns]
    return out


def check_unchanged(path: Path, journaled: dict[str, Any] | None) -> None:
    """For --resume: the source must be as it was when the interrupted run started."""
    if journaled is not None and fingerprint(path) != journaled:
        raise SourceChanged(
            f"the source {path} changed since the interrupted run started, so the tables "
            "copied then and those copied now would not match",
            hint="remove the run with `emrops migrate-db rollback` and run again; " + HINT,
        )
