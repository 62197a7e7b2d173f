"""Rows and index keys PostgreSQL cannot store.

A heap row must fit one 8 kB page once its long values are
moved out of line (TOAST), and values of fixed-size types (bigint, double precision,
timestamptz, uuid, ...) never move. A table of several hundred such columns (SQLite takes up
to 2000) can hold rows that fail the COPY with "row is too big", so plan looks for them.

Only wide tables are read: when even the largest possible row fits (every column non-NULL, each
variable-size value moved out of line, every alignment gap at its widest) there is nothing to
look at. Otherwise the rows SQL ranks largest (:data:`CANDIDATES` of them) are laid out as
PostgreSQL lays out a row (header, NULL bitmap, each value aligned to its type), counting the
least a value can take (text and bytea: the smaller of the value and an out-of-line pointer;
numeric and jsonb: their header); a row over the limit by that count is certain to be refused.

A btree index key (a UNIQUE or PRIMARY KEY constraint, any index) stops at 2704 bytes after
compression: a long URL, path or token in an indexed text or blob column passes SQLite and
fails the run's CREATE INDEX. Rows whose indexed text and blobs add up to more are compressed
here with zlib (which compresses at least as well as PostgreSQL's pglz or lz4), so a key still
over the limit is certain to be refused.
"""

from __future__ import annotations

import sqlite3
import zlib
from typing import Any

from emrops.migrate.plan import Plan, TablePlan
from emrops.migrate.profile import key_names, key_sql
from emrops.migrate.reflect import Table, quote
from emrops.migrate.sqlcopy import joined_sql
from emrops.migrate.trial import SchemaFailure

MAX_ROW = 8160  # bytes of one heap row (an 8 kB page less its header and the row's pointer)
POINTER = 18  # an out-of-line (TOAST) value's pointer left in the row
CANDIDATES = 200  # rows laid out per wide table
# fixed-size types: (size, alignment)
FIXED = {
    "bigint": (8, 8),
    "double precision": (8, 8),
    "timestamptz": (8, 8),
    "time": (8, 8),
    "date": (4, 4),
    "boolean": (1, 1),
    "uuid": (16, 1),
}
_TEXT_LIKE = ("text", "varchar", "citext", "bytea")

HINT = (
    "PostgreSQL stores a row in one 8 kB page and cannot move numbers, timestamps or UUIDs "
    "out of it: split the table in the source first (move some columns into a second table "
    "keyed by the same primary key), or cast some of its columns to text (--cast)"
)


def _least(pg_type: str, value: Any) -> tuple[int, int]:
    """(size, alignment) of a non-NULL value in a row, at its smallest."""
    base = pg_type.split("(")[0].strip()
    if base in FIXED:
        return FIXED[base]
    if base in _TEXT_LIKE:
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
        return min(len(raw) + 1, POINTER), 1
    return 1, 1  # numeric, jsonb: at least a one-byte header


def row_size(pg_types: list[str], row: tuple[Any, ...]) -> int:
    """The least number of bytes PostgreSQL needs for ``row`` (values in column order)."""
    bitmap = (len(row) + 7) // 8 if any(v is None for v in row) else 0
    offset = 0
    for pg_type, value in zip(pg_types, row, strict=True):
        if value is None:
            continue
        size, align = _least(pg_type, value)
        offset = -(-offset // align) * align + size
    header = -(-(23 + bitmap) // 8) * 8
    return header + offset


def _table(conn: sqlite3.Connection, table: Table, tp: TablePlan) -> SchemaFailure | None:
    types = [c.pg_type for c in tp.columns]
    # the largest row possible: every value present, each aligned after a 1-byte one
    most = 32 + sum(FIXED.get(t.split("(")[0].strip(), (24, 8))[0] + 7 for t in types)
    if most <= MAX_ROW:
        return None
    rank = joined_sql(
        ["0"]
        + [
            f"({quote(c.source)} IS NOT NULL) * "
            f"{FIXED.get(c.pg_type.split('(')[0].strip(), (POINTER, 1))[0] + 1}"
            for c in tp.columns
        ],
        " + ",
    )
    keys = key_sql(table)
    cols = ", ".join(
        f"CAST({quote(c.source)} AS BLOB)" if c.select_blob else quote(c.source) for c in tp.columns
    )
    over: list[tuple[int, tuple[Any, ...]]] = []
    for row in conn.execute(
        f"SELECT {', '.join(keys)}, {cols} FROM {quote(table.name)} "
        f"ORDER BY {rank} DESC LIMIT {CANDIDATES}"
    ):
        size = row_size(types, row[len(keys) :])
        if size > MAX_ROW:
            over.append((size, row[: len(keys)]))
    if not over:
        return None
    size, first = max(over)
    key = _key(table, first)
    return SchemaFailure(
        "row-size",
        tp.target,
        tp.target,
        "",
        f"{len(over)} source row(s) (of the {CANDIDATES} largest) need at least {size} bytes "
        f"in PostgreSQL, over its limit of {MAX_ROW} for one row (row is too big); the "
        f"largest: {key}",
        HINT,
    )


def oversized_rows(
    conn: sqlite3.Connection, tables: list[Table], plan: Plan, failures: list[SchemaFailure]
) -> None:
    """Add a ``row-size`` failure for each table holding a row PostgreSQL would refuse."""
    by_source = {t.name: t for t in tables}
    for tp in plan.tables:
        table = by_source.get(tp.source)
        if table is not None and tp.columns:
            failure = _table(conn, table, tp)
            if failure is not None:
                failures.append(failure)


MAX_INDEX_KEY = 2704  # bytes of a btree index row (version 4), after compression
INDEX_HINT = (
    "PostgreSQL's btree index keys stop at 2704 bytes: drop the index (or the UNIQUE) in a "
    "copy of the source and migrate that, then index a hash of the value (e.g. a UNIQUE "
    "index on md5(col)) after the run"
)


def oversized_index_keys(
    conn: sqlite3.Connection, tables: list[Table], plan: Plan, failures: list[SchemaFailure]
) -> None:
    """Add an ``index-size`` failure for each index over text or blobs holding a key
    PostgreSQL's btree would refuse."""
    by_source = {t.name: t for t in tables}
    for tp in plan.tables:
        table = by_source.get(tp.source)
        if table is None:
            continue
        wide = {c.source for c in tp.columns if c.pg_type.split("(")[0] in _TEXT_LIKE}
        for index in table.indexes:
            cols = [c for c in index.columns if c in wide]
            if not all(index.columns) or not cols:
                continue
            failure = _index(conn, table, index.name, cols, index.where, tp.target)
            if failure is not None:
                failures.append(failure)


def _index(
    conn: sqlite3.Connection,
    table: Table,
    name: str,
    cols: list[str],
    where: str | None,
    target: str,
) -> SchemaFailure | None:
    size = " + ".join(f"coalesce(length(CAST({quote(c)} AS BLOB)), 0)" for c in cols)
    keys = key_sql(table)
    cond = f"{size} > {MAX_INDEX_KEY}" + (f" AND ({where})" if where else "")
    try:
        rows = conn.execute(
            f"SELECT {', '.join(keys)}, {', '.join(f'CAST({quote(c)} AS BLOB)' for c in cols)} "
            f"FROM {quote(table.name)} WHERE {cond} LIMIT {CANDIDATES}"
        ).fetchall()
    except sqlite3.Error:
        return None  # a predicate SQLite cannot evaluate here: the run's CREATE INDEX decides
    over = []
    for row in rows:
        packed = sum(len(zlib.compress(v, 9)) for v in row[len(keys) :] if v is not None)
        if packed > MAX_INDEX_KEY:
            over.append((packed, row[: len(keys)]))
    if not over:
        return None
    packed, first = max(over)
    key = _key(table, first)
    return SchemaFailure(
        "index-size",
        target,
        name,
        "",
        f"{len(over)} source row(s) hold a key of {', '.join(cols)} of at least {packed} "
        f"bytes compressed, over PostgreSQL's btree limit of {MAX_INDEX_KEY}; the largest: "
        f"{key}",
        INDEX_HINT,
    )


def _key(table: Table, values: tuple[Any, ...]) -> str:
    """A row's key as the failures name it: ``id=5`` (or ``a='x', b=2``)."""
    return ", ".join(f"{k}={v!r}" for k, v in zip(key_names(table), values, strict=False))
