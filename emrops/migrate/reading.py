"""Reading a source table's rows for the copy and for verification, in key order.

A row's *key* is its rowid for a rowid table and its primary key for a WITHOUT ROWID table
(SQLite keeps such a table in primary-key order, and its primary key cannot be NULL). Rows are
read in key order and a stretch of them is named by a key range ``(after, hi]``: the rows whose
key is greater than ``after`` (None: from the first) and at most ``hi`` (None: to the last).
Comparisons use row values, so they follow the key columns' collations, as the table's order
does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from emrops.migrate.batching import RowBudget, approx_bytes
from emrops.migrate.plan import TablePlan
from emrops.migrate.reflect import quote

BATCH = 5000

Key = tuple[Any, ...]  # a row's key values: (rowid,) or the primary key's, in key order
BadText = Callable[[Any, str, bytes], None]  # (key, column, raw value): reject or raise


def key_columns(tp: TablePlan) -> list[str]:
    """The key columns as SQL: the rowid (``rowid``, or ``_rowid_``/``oid`` when a column is
    named rowid: the plan's key says which), or the primary key's columns (quoted)."""
    return [quote(k) for k in tp.key] if tp.without_rowid else [quote(tp.key[0])]


def _row_value(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"({', '.join(items)})"


def range_sql(tp: TablePlan, after: Key | None, hi: Key | None) -> tuple[str, tuple]:
    """`` WHERE ...`` (or "") selecting the key range ``(after, hi]``, and its parameters."""
    keys = key_columns(tp)
    marks = _row_value(["?"] * len(keys))
    conds, params = [], []
    if after is not None:
        conds.append(f"{_row_value(keys)} > {marks}")
        params += list(after)
    if hi is not None:
        conds.append(f"{_row_value(keys)} <= {marks}")
        params += list(hi)
    return (" WHERE " + " AND ".join(conds) if conds else ""), tuple(params)


def order_sql(tp: TablePlan) -> str:
    return ", ".join(key_columns(tp))


def key_value(tp: TablePlan, key: Key) -> Any:
    """A key as the journal and the reject file name it: the rowid, or {column: value}."""
    return dict(zip(tp.key, key, strict=True)) if tp.without_rowid else key[0]


def nth_after(src: sqlite3.Connection, tp: TablePlan, after: Key | None, n: int) -> Key | None:
    """The key of the ``n``-th row after ``after`` in key order (None: fewer rows are left)."""
    where, params = range_sql(tp, after, None)
    row = src.execute(
        f"SELECT {order_sql(tp)} FROM {quote(tp.source)}{where} ORDER BY {order_sql(tp)} "
        f"LIMIT 1 OFFSET {int(n) - 1}",
        params,
    ).fetchone()
    return tuple(row) if row is not None else None


def source_select(
    tp: TablePlan, *, after: bool = False, text_as_bytes: bool = False, where: str = ""
) -> str:
    """SELECT of a table's rows in key order (rowid first for rowid tables); ``after`` adds
    ``rowid > ?`` (rowid tables), ``where`` a clause of :func:`range_sql`; ``text_as_bytes``
    reads text undecoded (to find invalid UTF-8)."""
    cols = []
    for c in tp.columns:
        q = quote(c.source)
        if c.select_blob:
            cols.append(f"CAST({q} AS BLOB)")
        elif text_as_bytes:
            cols.append(f"CASE WHEN typeof({q}) = 'text' THEN CAST({q} AS BLOB) ELSE {q} END")
        else:
            cols.append(q)
    lead = "" if tp.without_rowid else f"{key_columns(tp)[0]}, "
    if after and not tp.without_rowid:
        where = f" WHERE {key_columns(tp)[0]} > ?"
    return f"SELECT {lead}{', '.join(cols)} FROM {quote(tp.source)}{where} ORDER BY {order_sql(tp)}"


def key_getter(tp: TablePlan) -> Callable[[tuple], Any]:
    """row (as :func:`source_select` reads it) -> its key as :func:`key_value` gives it."""
    if not tp.without_rowid:
        return lambda row: row[0]
    pk_pos = [i for i, c in enumerate(tp.columns) if c.source in tp.key]
    names = [tp.columns[i].source for i in pk_pos]
    return lambda row: {n: row[i] for n, i in zip(names, pk_pos, strict=True)}


def read_batches(src: sqlite3.Connection, tp: TablePlan, on_bad: BadText) -> Iterator[list]:
    """Batches of source rows. Text is decoded by sqlite3 at C speed; when a batch holds invalid
    UTF-8 (sqlite3 then fails the whole fetch), that stretch is re-read as bytes and decoded
    value by value: bad rows go to ``on_bad`` and are skipped, and reading carries on."""
    after: int | None = None
    texty = [i for i, c in enumerate(tp.columns) if not c.select_blob]
    sizer = RowBudget(BATCH)  # rows of hundreds of KB come a few at a time
    done = 0  # rows yielded (a WITHOUT ROWID table's restart point)
    while True:
        cur = src.execute(
            source_select(tp, after=after is not None), ((after,) if after is not None else ())
        )
        try:
            while True:
                batch = cur.fetchmany(sizer.rows)
                if not batch:
                    return
                sizer.saw(len(batch), approx_bytes(batch))
                if not tp.without_rowid:
                    after = batch[-1][0]
                done += len(batch)
                yield batch
        except sqlite3.OperationalError as exc:
            if "decode" not in str(exc).lower():
                raise
        if tp.without_rowid:  # no rowid to resume from: the rest, as bytes, in key order
            yield from _rest_as_bytes(src, tp, done, texty, on_bad, sizer)
            return
        sql = (
            source_select(tp, after=after is not None, text_as_bytes=True) + f" LIMIT {sizer.rows}"
        )
        raw = src.execute(sql, (after,) if after is not None else ()).fetchall()
        if not raw:
            return
        clean = [v for row in raw if (v := decoded(row, tp, texty, on_bad)) is not None]
        after = raw[-1][0]
        yield clean


def read_range(
    src: sqlite3.Connection, tp: TablePlan, after: Key | None, hi: Key | None, on_bad: BadText
) -> Iterator[tuple]:
    """The rows of the key range ``(after, hi]``, text decoded value by value: a row holding
    invalid UTF-8 goes to ``on_bad`` and is skipped."""
    texty = [i for i, c in enumerate(tp.columns) if not c.select_blob]
    where, params = range_sql(tp, after, hi)
    for row in src.execute(source_select(tp, text_as_bytes=True, where=where), params):
        values = decoded(row, tp, texty, on_bad)
        if values is not None:
            yield values


def _rest_as_bytes(
    src: sqlite3.Connection,
    tp: TablePlan,
    skip: int,
    texty: list[int],
    on_bad: BadText,
    sizer: RowBudget,
) -> Iterator[list]:
    """A WITHOUT ROWID table from its ``skip``-th row on, text read as bytes and decoded value
    by value (a key can itself be invalid UTF-8, so there is no key to resume after)."""
    cur = src.execute(source_select(tp, text_as_bytes=True))
    while batch := cur.fetchmany(sizer.rows):
        sizer.saw(len(batch), approx_bytes(batch))
        if skip >= len(batch):
            skip -= len(batch)
            continue
        batch, skip = batch[skip:], 0
        yield [v for row in batch if (v := decoded(row, tp, texty, on_bad)) is not None]


def decoded(row: tuple, tp: TablePlan, texty: list[int], on_bad: BadText) -> tuple | None:
    """``row`` (rowid first for rowid tables) with its text columns decoded; None after
    reporting a column holding invalid UTF-8 to ``on_bad``."""
    offset = 0 if tp.without_rowid else 1
    values = list(row)
    for i in texty:
        v = values[i + offset]
        if isinstance(v, bytes):
            try:
                values[i + offset] = v.decode("utf-8")
            except UnicodeDecodeError:
                on_bad(key_getter(tp)(row), tp.columns[i].source, v)
                return None
    return tuple(values)
