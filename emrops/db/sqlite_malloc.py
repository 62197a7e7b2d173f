"""Let SQLite queries in parallel threads scale: turn SQLite's memory statistics off.

SQLite counts every allocation under one process-wide mutex (``SQLITE_CONFIG_MEMSTATUS``, on by
default). Queries that allocate per row (a text value used by two functions, ``json_valid``,
``group_concat``) then serialise on that mutex: two such scans in two threads took 3x as long
each as one alone (measured here on the migration profile; ``docs/migrate.md``). Nothing in
emrops reads SQLite's memory statistics, so a process that runs parallel scans turns them off.

The setting can only change while SQLite is not initialised, and Python's ``sqlite3`` module
initialises it on import; so it is shut down and initialised again, which SQLite allows only
while no connection is open. :func:`disable_memstatus` is therefore called first thing in a
process (the ``emrops`` entry point, and the spawned worker processes), before any connection
exists; anywhere it cannot be done safely it does nothing (it is only a speed-up).
"""

from __future__ import annotations

import ctypes
import sys

SQLITE_OK = 0
SQLITE_CONFIG_MEMSTATUS = 9

_done: list[bool] = []


def disable_memstatus() -> bool:
    """Turn SQLite's allocation counting off in this process; True when it is off. Call only
    while this process has no open SQLite connection."""
    if _done:
        return _done[0]
    ok = False
    try:
        if sys.platform == "win32":  # the module links SQLite statically there
            raise OSError("not on Windows")
        import _sqlite3

        # the library the sqlite3 module itself calls (its own symbols resolve through it)
        lib = ctypes.CDLL(_sqlite3.__file__)
        if lib.sqlite3_shutdown() == SQLITE_OK:
            ok = lib.sqlite3_config(SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == SQLITE_OK
            if lib.sqlite3_initialize() != SQLITE_OK:  # pragma: no cover - out of memory only
                ok = False
    except (OSError, AttributeError, ImportError):  # pragma: no cover - no shared library
        ok = False
    _done.append(ok)
    return _done[0]
