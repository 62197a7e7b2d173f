"""Turning SQLite's allocation counting off: SQLite keeps working, and stops counting."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import ctypes, sqlite3, _sqlite3
from emrops.db.sqlite_malloc import disable_memstatus
lib = ctypes.CDLL(_sqlite3.__file__)
lib.sqlite3_memory_used.restype = ctypes.c_int64
if {disable}:
    assert disable_memstatus() is True
    assert disable_memstatus() is True  # idempotent
conn = sqlite3.connect(':memory:')
conn.create_function('twice', 1, lambda v: v * 2, deterministic=True)
conn.execute('CREATE TABLE t (x TEXT)')
conn.executemany('INSERT INTO t VALUES (?)', [(str(i) * 40,) for i in range(2000)])
conn.commit()
out = sqlite3.connect(':memory:')
conn.backup(out)
print(lib.sqlite3_memory_used(), out.execute('SELECT count(*), sum(length(x)) FROM t').fetchone(),
      conn.execute('SELECT sum(twice(length(x))) FROM t').fetchone()[0])
"""


def _probe(disable: bool) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(disable=disable)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split(maxsplit=1)
    return int(out[0]), out[1].strip()


def test_counting_off_and_sqlite_still_works() -> None:
    used_on, result_on = _probe(disable=False)
    used_off, result_off = _probe(disable=True)
    assert used_on > 100_000  # SQLite counts what it allocates by default
    assert used_off == 0  # and no longer after disable_memstatus()
    assert result_off == result_on  # same answers: functions, backups and queries still work
