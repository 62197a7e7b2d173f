"""What the copy does when PostgreSQL disagrees with it: rows it did not load (counted by
PostgreSQL, never by the sender), and the row behind a value it refused during COPY (named
from the error's CONTEXT line, for the message or the reject file)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

import psycopg

from emrops.errors import CheckFailed
from emrops.migrate.plan import TablePlan
from emrops.migrate.reading import key_value, order_sql, range_sql
from emrops.migrate.reflect import quote


class RowsLost(CheckFailed):
    """PostgreSQL loaded a different number of rows than were sent (exit 3): the table's
    transaction is rolled back rather than journaled as copied."""


def check_loaded(tp: TablePlan, sent: int, loaded: int) -> None:
    """Raise :class:`RowsLost` unless the target loaded exactly the ``sent`` rows. The copy
    counts rows as it reads them; only PostgreSQL's own count of the COPY says what arrived."""
    if loaded != sent:
        raise RowsLost(
            f"table {tp.source}: {sent} row(s) read from the source but PostgreSQL loaded "
            f"{loaded}; the table was rolled back",
            hint="run `emrops migrate-db plan` to see the anomaly (e.g. NULL keys), add a cast "
            "rule or use --on-error reject, then rerun with --resume",
        )


LINE = re.compile(r"\bline (\d+)")
INT = re.compile(r"-?\d+")
COLUMN = re.compile(r"\bcolumn (.+?)(?::|$)")


def refused_value(
    tp: TablePlan, row: tuple, offset: int, refused: tuple[str, str]
) -> tuple[str, Any, str]:
    """(column, value, error) of a row PostgreSQL refused, for the reject file."""
    column, err = refused
    for i, c in enumerate(tp.columns):
        if c.target == column:
            return c.source, row[i + offset], err
    return column, None, err


def copy_line(exc: psycopg.Error) -> int | None:
    """The COPY input line PostgreSQL refused (from the error's CONTEXT), if it says."""
    context = getattr(getattr(exc, "diag", None), "context", None) or ""
    m = LINE.search(context)
    return int(m.group(1)) if m else None


def nth_key(src: sqlite3.Connection, tp: TablePlan, line: int) -> Any:
    """The key of the ``line``-th row in copy order (when no row was skipped)."""
    order = ", ".join(quote(k) for k in tp.key)
    try:
        row = src.execute(
            f"SELECT {order} FROM {quote(tp.source)} ORDER BY {order} LIMIT 1 OFFSET ?",
            (line - 1,),
        ).fetchone()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    return row[0] if not tp.without_rowid else dict(zip(tp.key, row, strict=True))


def line_key(
    src: sqlite3.Connection,
    tp: TablePlan,
    line: int,
    sent: list[Any],
    chunks_sent: list[tuple[int, Any, Any]],
) -> Any:
    """The key of the row sent as COPY line ``line`` (1-based), or None when unknown.
    ``chunks_sent``: (first line, after, hi) of each SQL-built chunk (see reading.py)."""
    if not 1 <= line <= len(sent):
        return None
    key = sent[line - 1]
    if key is not None:
        return key
    for first, after, hi in reversed(chunks_sent):  # a line of an SQL-built chunk
        if first <= line:
            where, params = range_sql(tp, after, hi)
            order = order_sql(tp)
            row = src.execute(
                f"SELECT {order} FROM {quote(tp.source)}{where} ORDER BY {order} LIMIT 1 OFFSET ?",
                (*params, line - first),
            ).fetchone()
            return key_value(tp, tuple(row)) if row else None
    return None
