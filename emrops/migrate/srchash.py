"""The source side of verification: per table, row count and the sum of row hashes.

The hash of a row is the one :func:`emrops.migrate.convert.make_row_hasher` defines (MD5 of the
canonical text, summed as signed 64-bit integers), so it compares with PostgreSQL's
:func:`~emrops.migrate.convert.pg_hash_sql`. For a table whose every column is *fast* (no
conversion), SQLite computes the canonical text of the columns it can print exactly (text,
integers, booleans, bytea, timestamps already in canonical form) and Python only canonicalises
the rest (UUIDs, JSON, floats) and hashes; other tables go through the exact per-row path of
:func:`emrops.migrate.verify.source_checksum`, which also skips the rows the copy rejected.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emrops.migrate.convert import (
    NULL_MARK,
    SEP,
    ConversionError,
    canon_function,
    canon_kind,
    canon_ts,
)
from emrops.migrate.plan import ColumnPlan, TablePlan
from emrops.migrate.reflect import quote

BATCH = 5000


class Stopped(Exception):
    """The run gave up (another step failed): stop hashing."""


def _canon_sql(col: ColumnPlan) -> str | None:
    """SQL giving the canonical text of a fast column's non-NULL value, or None for Python."""
    c = quote(col.source)
    kind = canon_kind(col.pg_type)
    if col.select_blob:
        return f"lower(hex(CAST({c} AS BLOB)))" if kind == "bytea" else None
    if kind == "text" and col.converter in ("text", "pass"):
        return c  # text values (the profile says so)
    if kind == "int" and col.converter in ("bigint", "pass"):
        return f"CAST({c} AS TEXT)"
    if kind == "bool" and col.converter == "bool":
        return f"CASE WHEN {c} THEN 'true' ELSE 'false' END"  # 0/1 integers
    if kind == "ts" and col.converter == "ts":
        # already 'YYYY-MM-DD HH:MM:SS.ffffff' (naive UTC): itself; anything else via Python
        return (
            f"CASE WHEN length({c}) = 26 AND substr({c}, 11, 1) = ' ' AND substr({c}, 20, 1) "
            f"= '.' THEN {c} ELSE emrops_canon_ts({c}) END"
        )
    return None


def eligible(tp: TablePlan) -> bool:
    """Rowid or WITHOUT ROWID, every column fast: no value needs a conversion to be hashed."""
    return bool(tp.columns) and all(c.fast for c in tp.columns)


def _parts(tp: TablePlan) -> tuple[list[str], list[Callable[[Any], str] | None]]:
    """SELECT expressions and, per expression, the Python canonical function (None when SQL
    already gives the canonical text). Neighbouring SQL columns are joined in SQL."""
    exprs: list[str] = []
    funcs: list[Callable[[Any], str] | None] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            exprs.append(" || char(31) || ".join(run))
            funcs.append(None)
            run.clear()

    for col in tp.columns:
        sql = _canon_sql(col)
        if sql is not None:
            if not (col.notnull or col.identity):  # (hex(NULL) is '', so test the value)
                sql = f"CASE WHEN {quote(col.source)} IS NULL THEN char(30) || 'N' ELSE {sql} END"
            run.append(sql)
            continue
        flush()
        c = quote(col.source)
        exprs.append(f"CAST({c} AS BLOB)" if col.select_blob else c)
        funcs.append(canon_function(col.pg_type))
    flush()
    return exprs, funcs


def fast_checksum(
    conn: sqlite3.Connection, tp: TablePlan, stop: threading.Event | None = None
) -> tuple[int, int]:
    """(rows, sum of row hashes) of an :func:`eligible` table. Raises sqlite3.OperationalError
    when some text is not valid UTF-8, ConversionError/ValueError when a value has no canonical
    form (the caller then uses the exact path, which skips such rows as the copy did)."""
    conn.create_function("emrops_canon_ts", 1, canon_ts, deterministic=True)
    exprs, funcs = _parts(tp)
    count = total = 0
    cur = conn.execute(f"SELECT {', '.join(exprs)} FROM {quote(tp.source)}")
    hash_batch = _batch_hasher(funcs)
    while batch := cur.fetchmany(BATCH):
        total += hash_batch(batch)
        count += len(batch)
        if stop is not None and stop.is_set():
            raise Stopped
    return count, total


def _batch_hasher(funcs: list[Callable[[Any], str] | None]) -> Callable[[list], int]:
    """Generated code: the sum of the row hashes of a batch, one expression per part (a loop
    with one join and one MD5 per row, and no call per value where SQL did the work)."""
    env: dict[str, Any] = {
        "md5": hashlib.md5,
        "from_bytes": int.from_bytes,
        "NM": NULL_MARK,
        "SEP": SEP,
    }
    names = [f"v{i}" for i in range(len(funcs))]
    parts = []
    for i, f in enumerate(funcs):
        if f is None:
            parts.append(names[i])
        else:
            env[f"f{i}"] = f
            parts.append(f"(NM if {names[i]} is None else f{i}({names[i]}))")
    src = (
        "def hash_batch(batch):\n"
        "    total = 0\n"
        f"    for {', '.join(names)}, in batch:\n"
        f"        text = SEP.join(({', '.join(parts)},))\n"
        "        total += from_bytes(md5(text.encode()).digest()[:8], 'big', signed=True)\n"
        "    return total\n"
    )
    exec(compile(src, "<emrops batch hasher>", "exec"), env)  # noqa: S102 - generated from types
    return env["hash_batch"]  # type: ignore[no-any-return]


def source_checksum(
    source: Path, tp: TablePlan, stop: threading.Event | None = None
) -> tuple[int, int, int]:
    """(rows, checksum, rows that cannot be converted) of one source table, the fast way when
    the table allows it."""
    from emrops.migrate.verify import source_checksum as exact

    if eligible(tp):
        conn = sqlite3.connect(
            f"file:{source.resolve()}?mode=ro", uri=True, check_same_thread=False
        )
        try:
            rows, total = fast_checksum(conn, tp, stop)
            return rows, total, 0
        except (sqlite3.OperationalError, ConversionError, ValueError, TypeError):
            pass  # invalid UTF-8 or a value without canonical form: the exact path says which
        finally:
            conn.close()
    return exact(source, tp)


def source_checksums(
    source: Path, tables: list[TablePlan], stop: threading.Event | None = None
) -> dict[str, tuple[int, int, int]]:
    """:func:`source_checksum` of every table, by target name (for ``verify(sums=...)``)."""
    sums = {}
    for tp in tables:
        if stop is not None and stop.is_set():
            raise Stopped
        sums[tp.target] = source_checksum(source, tp, stop)
    return sums


class Hashing:
    """Source checksums being computed in a child process (see :func:`start`)."""

    def __init__(self, source: Path, tables: list[TablePlan]):
        # spawn: a fresh interpreter, never a fork of a process running threads
        self._pool = multiprocessing.get_context("spawn").Pool(1)
        self._result = self._pool.apply_async(source_checksums, (source, tables))
        self._lock = threading.Lock()
        self._sums: dict[str, tuple[int, int, int]] | None = None

    def get(self) -> dict[str, tuple[int, int, int]]:
        """Wait for the checksums (re-raises what the child raised)."""
        with self._lock:  # several verify threads may ask at once
            if self._sums is None:
                self._sums = self._result.get()
            return self._sums

    def close(self) -> None:
        """Stop the child (at once if it is still hashing: the run failed or is done)."""
        self._pool.terminate()
        self._pool.join()


def start(source: Path, tables: list[TablePlan]) -> Hashing:
    """Start hashing every table of ``source`` in a child process."""
    return Hashing(source, tables)
