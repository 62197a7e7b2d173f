"""The source side of verification: per table, row count and the sum of row hashes.

The hash of a row is the one :func:`emrops.migrate.convert.make_row_hasher` defines (MD5 of the
canonical text, summed as signed 64-bit integers), so it compares with PostgreSQL's
:func:`~emrops.migrate.convert.pg_hash_sql`. For a table whose every column is *fast* (no
conversion), SQLite builds each row's whole canonical text in one SQL expression (text,
integers, booleans, bytea, UUIDs and timestamps already in canonical form in SQL itself; JSON,
floats and timestamps in another form through the Python canonical functions, registered as SQL
functions) and Python does one MD5 per row and nothing else; other tables go through the exact
per-row path of :func:`emrops.migrate.verify.source_checksum`, which also skips the rows the
copy rejected.
"""

from __future__ import annotations

import array
import hashlib
import multiprocessing
import operator
import sqlite3
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from emrops.db.appdefs import register_stand_ins
from emrops.db.sqlite_file import open_sqlite
from emrops.db.sqlite_malloc import disable_memstatus
from emrops.migrate import sqlcopy
from emrops.migrate.batching import fetch_batches
from emrops.migrate.convert import (
    NULL_MARK,
    SEP,
    canon_function,
    canon_kind,
    canon_ts,
    numeric_precision,
    numeric_scale,
)
from emrops.migrate.plan import ColumnPlan, TablePlan
from emrops.migrate.reflect import quote

BATCH = 5000


class Stopped(Exception):
    """The run gave up (another step failed): stop hashing."""


def _canon_sql(col: ColumnPlan, python: str) -> str | None:
    """SQL giving the canonical text of a fast column's non-NULL value, or None for Python
    (``python``: the SQL calling the column's Python canonical function, for a mix)."""
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
        # (the profile checked every value is a valid ISO-8601 timestamp); whole seconds
        # get their zero microseconds
        return (
            f"CASE WHEN {c} GLOB '????-??-?? ??:??:??.[0-9][0-9][0-9][0-9][0-9][0-9]' THEN {c} "
            f"WHEN {c} GLOB '????-??-?? ??:??:??' THEN {c} || '.000000' "
            f"ELSE emrops_canon_ts({c}) END"
        )
    if kind == "numeric" and col.converter == "numeric":
        # integers as PostgreSQL prints them (the scale's zeros after them); reals from
        # Python's shortest repr, which is what the copy sent: SQLite's own text when it is
        # that (sqlcopy.short_sql), padded to the scale, when no rounding is needed
        # values at or over numeric(p,s)'s limit go to Python, which refuses them as
        # PostgreSQL does (the query fails and the caller takes the exact path)
        scale = numeric_scale(col.pg_type)
        precision = numeric_precision(col.pg_type)
        digits = f"CAST({c} AS TEXT)" + (f" || '.{'0' * scale}'" if scale else "")
        fits = ""
        if precision is not None and precision - (scale or 0) < 19:
            limit = 10 ** (precision - (scale or 0))
            fits = f" AND {c} > -{limit} AND {c} < {limit}"
        real = ""
        if scale is None and sqlcopy.short_exact():
            real = (
                f"WHEN typeof({c}) = 'real'{fits} AND {sqlcopy.short_sql(c)} "
                f"THEN CAST({c} AS TEXT) "
            )
        elif scale is not None and sqlcopy.fixed_exact():
            real = f"WHEN typeof({c}) = 'real'{fits} AND {sqlcopy.fixed_sql(c, scale)} "
            real += f"THEN printf('%.{scale}f', {c}) "
        return f"CASE WHEN typeof({c}) = 'integer'{fits} THEN {digits} {real}ELSE {python} END"
    if kind == "uuid" and col.converter == "pass":
        # the profile matched every value to 32 hex digits or the dashed form
        return f"CASE WHEN length({c}) = 32 THEN lower({c}) ELSE lower(replace({c}, '-', '')) END"
    return None


def eligible(tp: TablePlan) -> bool:
    """Rowid or WITHOUT ROWID, every column fast: no value needs a conversion to be hashed."""
    return bool(tp.columns) and all(c.fast for c in tp.columns)


def row_sql(conn: sqlite3.Connection, tp: TablePlan) -> str:
    """SQL of one row's canonical text (the values joined by SEP, NULL as NULL_MARK). Values
    with no canonical form in SQL call their Python canonical function, registered on
    ``conn``; one that fails makes the query fail (the caller then uses the exact path)."""
    conn.create_function("emrops_canon_ts", 1, canon_ts, deterministic=True)
    parts = []
    for i, col in enumerate(tp.columns):
        c = quote(col.source)
        name = f"emrops_canon_{i}"
        python = f"{name}({f'CAST({c} AS BLOB)' if col.select_blob else c})"
        sql = _canon_sql(col, python)
        if sql is None or python in sql:
            conn.create_function(name, 1, canon_function(col.pg_type), deterministic=True)
        sql = sql or python
        if not (col.notnull or col.identity):  # (hex(NULL) is '', so test the value)
            sql = f"CASE WHEN {c} IS NULL THEN {_literal(NULL_MARK)} ELSE {sql} END"
        parts.append(sql)
    sep = _literal(SEP)
    return sqlcopy.joined_sql([t for part in parts for t in (sep, part)][1:], " || ")


def _literal(text: str) -> str:
    """A string literal holding ``text`` as it is (control characters included: a char()
    call would run per column and row)."""
    return "'" + text.replace("'", "''") + "'"


_ENCODE = operator.methodcaller("encode", "utf-8", "surrogatepass")
_DIGEST = operator.methodcaller("digest")


def hash_sum(texts: Iterable[str]) -> int:
    """The sum of the row hashes of canonical row texts (as :func:`convert.row_hash` each),
    with no Python code run per row: MD5 digests joined, their first 8 bytes read as signed
    big-endian 64-bit integers by an array."""
    digests = array.array("q", b"".join(map(_DIGEST, map(hashlib.md5, map(_ENCODE, texts)))))
    if sys.byteorder == "little":
        digests.byteswap()
    return sum(digests[::2])  # each digest is two 8-byte items: the first is the hash


def fast_checksum(
    conn: sqlite3.Connection,
    tp: TablePlan,
    stop: threading.Event | None = None,
    rowids: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """(rows, sum of row hashes) of an :func:`eligible` table (or of its rows with rowid in
    ``rowids``, inclusive): SQLite builds each row's canonical text, Python only hashes it.
    Raises sqlite3.OperationalError when some text is not valid UTF-8 or a value has no
    canonical form (the caller then uses the exact path, which skips such rows as the copy
    did)."""
    count = total = 0
    where = f" WHERE {quote(tp.key[0])} BETWEEN ? AND ?" if rowids is not None else ""
    cur = conn.execute(f"SELECT {row_sql(conn, tp)} FROM {quote(tp.source)}{where}", rowids or ())
    first = operator.itemgetter(0)
    for batch in fetch_batches(cur, BATCH):
        texts = list(map(first, batch))
        if None in texts:
            # a NULL where the plan expects none (the row's text is NULL): the exact path
            # handles it as the copy did
            raise sqlite3.OperationalError("NULL in a column planned as NOT NULL")
        total += hash_sum(texts)
        count += len(batch)
        if stop is not None and stop.is_set():
            raise Stopped
    return count, total


SPLIT_ROWS = 200_000  # a table this big is hashed as key ranges at once (source_checksum parts)


def source_checksum(
    source: Path, tp: TablePlan, stop: threading.Event | None = None, parts: int = 1
) -> tuple[int, int, int]:
    """(rows, checksum, rows that cannot be converted) of one source table, the fast way when
    the table allows it; a big rowid table in ``parts`` rowid ranges hashed by as many
    processes at once (the sum of row hashes does not depend on how the rows are split)."""
    from emrops.migrate.verify import source_checksum as exact

    if eligible(tp):
        ranges = _rowid_ranges(source, tp, parts) if not tp.without_rowid else None
        try:
            if ranges is None:
                rows, total = _fast(source, tp, stop, None)
            else:
                ctx = multiprocessing.get_context("spawn")  # processes: hashing holds the GIL
                with ctx.Pool(len(ranges), initializer=disable_memstatus) as pool:
                    done = pool.starmap(_fast, [(source, tp, None, r) for r in ranges])
                rows, total = sum(d[0] for d in done), sum(d[1] for d in done)
            return rows, total, 0
        except sqlite3.OperationalError:
            pass  # invalid UTF-8 or a value without canonical form: the exact path says which
    return exact(source, tp)


def _fast(
    source: Path, tp: TablePlan, stop: threading.Event | None, rowids: tuple[int, int] | None
) -> tuple[int, int]:
    conn = open_sqlite(source, check_same_thread=False)
    try:
        register_stand_ins(conn)
        return fast_checksum(conn, tp, stop, rowids)
    finally:
        conn.close()


def _rowid_ranges(source: Path, tp: TablePlan, parts: int) -> list[tuple[int, int]] | None:
    """``parts`` rowid ranges holding about as many rows each (None: not worth splitting)."""
    if parts < 2 or tp.rows < SPLIT_ROWS:
        return None
    conn = open_sqlite(source)
    r = quote(tp.key[0])
    try:
        cuts: list[int] = []
        for i in range(1, parts):
            row = conn.execute(
                f"SELECT {r} FROM {quote(tp.source)} ORDER BY {r} LIMIT 1 OFFSET ?",
                (tp.rows * i // parts,),
            ).fetchone()
            if row is not None and (not cuts or row[0] > cuts[-1]):
                cuts.append(int(row[0]))
    finally:
        conn.close()
    bounds = [-(2**63), *cuts, 2**63]
    return [(bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)] if cuts else None


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
    """Source checksums computed in a child process: created early (the interpreter starts
    while the run snapshots and plans), then :meth:`start` hands it the tables."""

    def __init__(self) -> None:
        # spawn: a fresh interpreter, never a fork of a process running threads
        self._pool = multiprocessing.get_context("spawn").Pool(1, initializer=disable_memstatus)
        self._result: Any = None
        self._lock = threading.Lock()
        self._sums: dict[str, tuple[int, int, int]] | None = None

    def start(self, source: Path, tables: list[TablePlan]) -> Hashing:
        """Start hashing every table of ``source``."""
        self._result = self._pool.apply_async(source_checksums, (source, tables))
        return self

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
