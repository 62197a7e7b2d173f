"""Profile the values actually stored in each column (SQLite lets any value into any column).

One aggregate query per table counts storage classes, 0/1 integers, ISO-8601 text, JSON text,
NUL bytes and invalid UTF-8; :func:`example` then fetches the first offending row of an anomaly
(its key and value) so a plan can name it.
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from emrops.db.appdefs import register_stand_ins
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import CheckFailed
from emrops.migrate.batching import fetch_batches
from emrops.migrate.convert import BOOL_TEXT
from emrops.migrate.reflect import (
    ROWID_NAMES,
    Table,
    affinity,
    declared_precision,
    quote,
    rowid_name,
)

NON_ASCII_GLOB = "*[^\x01-\x7f]*"  # any character outside ASCII (any byte >= 0x80)
# The shape of an ISO-8601 date and time; julianday() and date() then require the digits and their
# ranges itself (character classes here cost SQLite 0.17 s more per million values, and a fuzz
# of 100k near-ISO strings found no value the two tests judge differently).
ISO_GLOB = "????-??-??[ T]??:??*"
UUID32_GLOB = "[0-9a-fA-F]" * 32
UUID36_GLOB = "-".join("[0-9a-fA-F]" * n for n in (8, 4, 4, 4, 12))
DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9]"
TIME_GLOB = "[0-2][0-9]:[0-5][0-9]"  # HH:MM, then :SS and .ffffff (up to 6 digits)


def time_declared(up: str) -> bool:
    """A column declared TIME (or TIME(n)): PostgreSQL's time, not a timestamp."""
    return up.split("(")[0].strip() in ("TIME", "TIME WITHOUT TIME ZONE")


@dataclass
class ColumnProfile:
    n_int: int = 0
    n_real: int = 0
    n_text: int = 0
    n_blob: int = 0
    n_null: int = 0
    n_bool: int = 0  # integers that are 0 or 1
    n_bool_text: int = 0  # text PostgreSQL reads as a boolean ('t', 'false', 'yes', ...)
    n_iso: int = 0  # text parsing as an ISO-8601 date and time
    n_date: int = 0  # text that is exactly YYYY-MM-DD
    n_time: int = 0  # text that is HH:MM[:SS[.ffffff]] (only counted for TIME-declared columns)
    n_uuid: int = 0  # text that is a UUID (32 hex digits, or 36 with dashes); CHAR(32)/UUID only
    n_json: int = 0  # text that is valid JSON (only counted for JSON-declared columns)
    n_nul: int = 0  # text holding a NUL byte
    n_bad_utf8: int = 0  # text that is not valid UTF-8
    n_fraction: int = 0  # reals with a fractional part
    # the least and greatest integer (counted in the detailed pass only, else None)
    min_int: int | None = None
    max_int: int | None = None
    max_len: int | None = None  # longest text, in characters
    # (numeric(p,s), values it would round or refuse): counted in the profile's scan for a
    # declared NUMERIC(p,s) (:func:`unfit_sql`), else None (columns.py scans for them)
    unfit: tuple[str, int] | None = None

    @property
    def n_values(self) -> int:
        return self.n_int + self.n_real + self.n_text + self.n_blob


@dataclass
class TableProfile:
    rows: int
    columns: dict[str, ColumnProfile]


# A UUID as text: dashed (its shape says UUID), or 32 hex digits whose version nibble is 1-8
# and variant bits 10xx, as RFC 4122/9562 UUIDs have (Django's and SQLAlchemy's CHAR(32)
# UUIDs). Other 32-hex text (MD5 digests) would come back from a uuid column with dashes,
# so it stays text; a random digest passes this one time in eight, so a column of them
# almost never does as a whole.
_UUID_RE = re.compile(
    r"[0-9a-fA-F]{12}[1-8][0-9a-fA-F]{3}[89abAB][0-9a-fA-F]{15}"
    r"|[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"
)


def _utf8_bad(value: bytes | None) -> int:
    if value is None:
        return 0
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return 1
    return 0


def _is_uuid(value: object) -> int:
    return int(isinstance(value, str) and _UUID_RE.fullmatch(value) is not None)


def register_functions(conn: sqlite3.Connection) -> None:
    conn.create_function("emrops_utf8_bad", 1, _utf8_bad, deterministic=True)
    # a compiled regex is ~3x faster than SQLite matching 32 GLOB character classes
    conn.create_function("emrops_is_uuid", 1, _is_uuid, deterministic=True)


BOOL_TEXT_SQL = "(" + ", ".join(f"'{k}'" for k in BOOL_TEXT) + ")"

# Each condition is a predicate over one column, used both for counting and for examples.
CONDITIONS = {
    "integer": "typeof({c}) = 'integer'",
    "real": "typeof({c}) = 'real'",
    "text": "typeof({c}) = 'text'",
    "blob": "typeof({c}) = 'blob'",
    # not `c IS NULL`: SQLite folds that to false for a column declared NOT NULL, which can
    # still hold NULLs written before the constraint was (an older schema, writable_schema)
    "null": "typeof({c}) = 'null'",
    "bool": "typeof({c}) = 'integer' AND {c} IN (0, 1)",
    # what Rails and hand-written apps stored ('t'/'f'), as PostgreSQL's boolean input reads it
    "bool_text": f"typeof({{c}}) = 'text' AND lower(trim({{c}})) IN {BOOL_TEXT_SQL}",
    # date(..., '+0 days') normalises an impossible day (2024-02-30 becomes 2024-03-01),
    # which PostgreSQL refuses: the day must come back unchanged
    # (and year 0000, which PostgreSQL has not: compared as substr(), which has no affinity;
    # `c >= '0001'` in a DATE or DATETIME column (NUMERIC affinity) compared the number 1,
    # which every text is greater than, so 0000-01-01 passed plan and failed the copy)
    # a zone of hours alone (+05, as PostgreSQL prints it) or without its colon (+0530) is
    # ISO-8601 too, and PostgreSQL and Python read it; SQLite's julianday() needs +HH:MM, so
    # such a value is tried again completed (coalesce: only values julianday() refused; a
    # GLOB '*...' per value made the test 2.6 times as slow)
    "iso": f"typeof({{c}}) = 'text' AND {{c}} GLOB '{ISO_GLOB}' "
    "AND coalesce(julianday({c}), julianday(CASE WHEN substr({c}, -3, 1) IN ('+', '-') "
    "THEN {c} || ':00' WHEN substr({c}, -5, 1) IN ('+', '-') "
    "THEN substr({c}, 1, length({c}) - 2) || ':' || substr({c}, -2) END)) IS NOT NULL "
    "AND substr({c}, 1, 4) >= '0001' "
    # julianday() takes hour 24 (24:59:59 is the next day), PostgreSQL and Python do not
    "AND substr({c}, 12, 2) < '24' "
    "AND date(substr({c}, 1, 10), '+0 days') = substr({c}, 1, 10)",
    "date": f"typeof({{c}}) = 'text' AND {{c}} GLOB '{DATE_GLOB}' "
    "AND substr({c}, 1, 4) >= '0001' AND date({c}, '+0 days') = {c}",
    # HH:MM, HH:MM:SS or HH:MM:SS.f to .ffffff, hours 00-23, nothing after: PostgreSQL's time
    # reads it as it is (a zone suffix, which time would drop, is not taken)
    "time": f"typeof({{c}}) = 'text' AND substr({{c}}, 1, 2) <= '23' AND {{c}} GLOB '{TIME_GLOB}*' "
    "AND (length({c}) = 5 OR (length({c}) = 8 AND substr({c}, 6) GLOB ':[0-5][0-9]') "
    "OR (length({c}) BETWEEN 10 AND 15 AND substr({c}, 6) GLOB ':[0-5][0-9].[0-9]*' "
    "AND substr({c}, 10) NOT GLOB '*[^0-9]*'))",
    # a JSON column's numbers are JSON too: SQLite's affinity stored the document '5' as 5
    # (not an infinity, which JSON cannot spell)
    "json": "typeof({c}) IN ('text', 'integer', 'real') AND json_valid({c})",
    "nul": "typeof({c}) = 'text' AND instr(CAST({c} AS BLOB), x'00') > 0",
    "bad_utf8": (
        "typeof({c}) = 'text' AND {c} GLOB :nonascii AND emrops_utf8_bad(CAST({c} AS BLOB))"
    ),
    # a real that is no bigint: a fraction, or beyond 64 bits (CAST saturates, so a value of
    # 2^63 or more compares equal to its cast)
    "fraction": "typeof({c}) = 'real' AND ({c} <> CAST(CAST({c} AS INTEGER) AS REAL) "
    "OR {c} >= 9223372036854775807.0 OR {c} <= -9223372036854775807.0)",
}


def unfit_sql(precision: int, scale: int) -> str:
    """Predicate (with ``{c}``) of a number that numeric(precision, scale) would round (more
    decimals than the scale) or refuse (too many integer digits)."""
    limit = 10 ** (precision - scale)
    return (
        f"typeof({{c}}) IN ('integer', 'real') AND (round({{c}}, {scale}) <> {{c}} "
        f"OR {{c}} >= {limit} OR {{c}} <= -{limit})"
    )


def uuid_declared(up: str) -> bool:
    """A declared type that names a UUID (``UUID``, ``GUID``: NUMERIC affinity in SQLite,
    text in every database written by hand that uses them)."""
    return "UUID" in up or "GUID" in up


SCAN_AGGREGATES = 1000  # per query (SQLite: at most 2000 result columns)

_ISO_RE = re.compile(r"\d{4}-[01]\d-[0-3]\d[ T][0-2]\d:[0-5]\d")


def _column_exprs(
    conn: sqlite3.Connection,
    table: Table,
    name: str,
    declared: str,
    json_col: bool,
    *,
    notnull: bool = False,
    check_text: bool = True,
) -> dict[str, str]:
    """The aggregates worth computing for one column, by its declared type (first pass):
    ``count`` (left out for a NOT NULL column: every row counts), and the ``textcheck`` for
    NUL bytes only with ``check_text``."""
    c = quote(name)
    up = declared.upper()
    aff = affinity(declared)
    exprs = {} if notnull else {"count": f"count({c})"}
    texty = (aff == "TEXT" or json_col or "DATE" in up or "TIME" in up) or (
        aff == "NUMERIC" and uuid_declared(up)
    )
    if "BOOL" in up:
        exprs["n_bool"] = f"sum(typeof({c}) = 'integer' AND {c} IN (0, 1))"
        exprs["n_int"] = f"sum(typeof({c}) = 'integer')"
        exprs["n_text"] = f"sum(typeof({c}) = 'text')"
        exprs["n_bool_text"] = f"sum({CONDITIONS['bool_text'].format(c=c)})"
    elif texty:
        exprs["n_text"] = f"sum(typeof({c}) = 'text')"
        if "DATE" in up or "TIME" in up:
            exprs["n_int"] = f"sum(typeof({c}) = 'integer')"
        # instr() compares the text's bytes (NULs included) without copying the value; the
        # needle is bound (:nul), so no string is built per row (a malloc per row makes
        # parallel queries contend on SQLite's global memory mutex)
        if check_text:
            exprs["textcheck"] = f"sum(typeof({c}) = 'text' AND instr({c}, :nul) > 0)"
        if json_col:
            exprs["n_json"] = f"sum({CONDITIONS['json'].format(c=c)})"
        if up.startswith("DATE") and "TIME" not in up:
            exprs["n_date"] = f"sum({CONDITIONS['date'].format(c=c)})"
        if time_declared(up):
            exprs["n_time"] = f"sum({CONDITIONS['time'].format(c=c)})"
        if (uuid_declared(up) or "CHAR(32)" in up.replace(" ", "")) and _looks_uuid(
            conn, table, name
        ):
            # the same test as GLOB UUID32_GLOB OR UUID36_GLOB
            exprs["n_uuid"] = f"sum(emrops_is_uuid({c}))"
        if "CHAR" in up:
            # over every value: it is only used when all of them are text (the column is
            # clean), else the detailed pass measures text alone. (A CASE here copies each
            # value, and the mallocs make parallel queries contend on SQLite's memory mutex.)
            exprs["max_len"] = f"max(length({c}))"
    elif aff == "INTEGER":
        exprs["n_int"] = f"sum(typeof({c}) = 'integer')"
    elif aff in ("REAL", "NUMERIC"):
        exprs["numbers"] = f"sum(typeof({c}) IN ('integer', 'real'))"
        precision = declared_precision(declared) if aff == "NUMERIC" else None
        if precision is not None:  # numeric(p,s): its fit, in the same scan
            exprs["n_unfit"] = f"sum({unfit_sql(*precision).format(c=c)})"
    return exprs  # untyped columns get the detailed pass


def profile_table(
    conn: sqlite3.Connection, table: Table, json_columns: set[str], check_text: bool = True
) -> TableProfile:
    """Count each column's value kinds: one cheap pass over the table, then a detailed pass
    only for the columns where the cheap pass saw something unexpected. ``check_text=False``
    leaves NUL bytes and invalid UTF-8 to the copy (see :func:`planner.build_plan`)."""
    register_functions(conn)
    plan: list[tuple[str, str, str]] = []  # (column, field, expr)
    for col in table.columns:
        if col.name == table.rowid_alias:
            continue
        exprs = _column_exprs(
            conn,
            table,
            col.name,
            col.declared,
            col.name in json_columns,
            notnull=col.notnull,
            check_text=check_text,
        )
        plan.extend((col.name, fld, expr) for fld, expr in exprs.items())
    text_cols = list(dict.fromkeys(c for c, f, _e in plan if f == "n_text"))
    for name in text_cols:
        if _looks_iso(conn, table, name):
            plan.append((name, "n_iso", f"sum({CONDITIONS['iso'].format(c=quote(name))})"))
    # A column leading a covering index is counted over its distinct values (the index is
    # already grouped), in a query of its own; the other columns' aggregates are shared out
    # between two table scans of about equal cost, run at once (SQLite releases the GIL while
    # it scans), each on its own read-only connection.
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    by_column: dict[str, list[tuple[str, str, str]]] = {}
    for item in plan:
        by_column.setdefault(item[0], []).append(item)
    jobs: list[tuple[str, list[tuple[str, str, str]]]] = []  # (SQL, items)
    scans: list[list[tuple[str, str, str]]] = [[], []]
    weight = [0.0, 0.0]
    for items in sorted(by_column.values(), key=lambda it: -sum(_cost(e) for _c, _f, e in it)):
        grouped = _aggregate_sql(conn, table, items[0][0], items)
        if grouped is not None:
            jobs.append((grouped, items))
            continue
        lighter = weight.index(min(weight))
        scans[lighter].extend(items)
        weight[lighter] += sum(_cost(e) for _c, _f, e in items)
    # SQLite returns at most 2000 columns per row: a wide table's scan is split into queries
    # of at most SCAN_AGGREGATES aggregates each
    jobs += [
        (_scan_sql(table, items[i : i + SCAN_AGGREGATES]), items[i : i + SCAN_AGGREGATES])
        for items in scans
        for i in range(0, len(items), SCAN_AGGREGATES)
    ]

    def aggregate(sql: str) -> tuple:
        with readers.lend() as c:
            return tuple(c.execute(sql, {"nul": "\x00"}).fetchone())

    def decode() -> set[str]:
        with readers.lend() as c:
            return _undecodable(c, table, text_cols) if check_text else set()

    with _readers_for(conn, path) as readers:
        bad_future = readers.pool.submit(decode)
        futures = [readers.pool.submit(aggregate, sql) for sql, _items in jobs]
        results = [f.result() for f in futures]
        bad_text = bad_future.result()
    if not jobs:
        results = [tuple(conn.execute(f"SELECT count(*) FROM {quote(table.name)}").fetchone())]
    parts = [items for _sql, items in jobs] or [[]]
    rows = int(results[0][0] or 0)
    found: dict[str, dict[str, Any]] = {c.name: {} for c in table.columns}
    for part, row in zip(parts, results, strict=True):
        for (cname, fld, _e), value in zip(part, row[1:], strict=True):
            found[cname][fld] = value or 0 if fld != "max_len" else value
    columns: dict[str, ColumnProfile] = {}
    for col in table.columns:
        f = found[col.name]
        if col.name == table.rowid_alias:
            columns[col.name] = ColumnProfile(n_int=rows)
            continue
        count = f.get("count", rows)  # NOT NULL: every row
        p = ColumnProfile(n_null=rows - count, max_len=f.get("max_len"))
        clean = False
        if "n_bool" in f:
            p.n_int, p.n_bool = f["n_int"], f["n_bool"]
            p.n_text, p.n_bool_text = f["n_text"], f["n_bool_text"]
            clean = p.n_bool + p.n_bool_text == count
        elif "n_text" in f:
            p.n_text, p.n_int = f["n_text"], f.get("n_int", 0)
            p.n_json, p.n_date = f.get("n_json", 0), f.get("n_date", 0)
            p.n_time = f.get("n_time", 0)
            p.n_iso = f.get("n_iso", 0)
            p.n_uuid = f.get("n_uuid", 0)
            clean = p.n_text == count and not f.get("textcheck") and col.name not in bad_text
        elif "n_int" in f and set(f) <= {"count", "n_int"}:
            p.n_int = f["n_int"]
            clean = p.n_int == count
        elif "numbers" in f:
            clean = f["numbers"] == count
            if clean:  # split integers from reals only when it matters (it does not)
                p.n_real = count
            if "n_unfit" in f:
                precision, scale = declared_precision(col.declared) or (0, 0)
                p.unfit = (f"numeric({precision},{scale})", f["n_unfit"])
        if not clean:
            p = _detail(conn, table, col.name, col.name in json_columns, rows)
        up = col.declared.upper()
        stamp = ("DATE" in up or "TIME" in up) and not time_declared(up)
        if stamp and p.n_text > p.n_iso + p.n_date:
            # some text is not an ISO timestamp: count the date-only values exactly (a
            # timestamp column holding dates takes them as midnight UTC, with a note)
            c = quote(col.name)
            iso, day = conn.execute(
                f"SELECT sum({CONDITIONS['iso'].format(c=c)}), "
                f"sum({CONDITIONS['date'].format(c=c)}) FROM {quote(table.name)}"
            ).fetchone()
            p.n_iso, p.n_date = iso or 0, day or 0
        columns[col.name] = p
    return TableProfile(rows=rows, columns=columns)


def _cost(expr: str) -> float:
    """Rough relative cost of one aggregate (to start the slowest queries first)."""
    for needle, cost in (
        ("emrops_is_uuid", 8.0),
        ("GLOB", 6.0),
        ("json_valid", 3.0),
        ("round(", 3.0),
    ):
        if needle in expr:
            return cost
    return 1.0


def _scan_sql(table: Table, items: list[tuple[str, str, str]]) -> str:
    """``SELECT count(*), <aggregates>`` over the table."""
    return f"SELECT count(*){''.join(', ' + e for _c, _f, e in items)} FROM {quote(table.name)}"


def _aggregate_sql(
    conn: sqlite3.Connection, table: Table, column: str, items: list[tuple[str, str, str]]
) -> str | None:
    """When ``column`` leads an index with BINARY collation that SQLite would scan to group
    it: the aggregates of ``items`` (all of this column) weighted by the count of each
    distinct value (exact: every aggregate here is a count of values meeting a predicate, or
    a max, of one column); else None (a plain scan, :func:`_scan_sql`)."""
    t, c = quote(table.name), quote(column)
    grouped_from = f"SELECT {c}, count(*) AS n FROM {t} GROUP BY {c}"
    if not _grouped_by_index(conn, grouped_from, column):
        return None
    weighted = []
    for _c, _f, e in items:
        if e == f"count({c})":
            weighted.append(f"sum(CASE WHEN {c} IS NOT NULL THEN n ELSE 0 END)")
        elif e.startswith("sum(") and e.endswith(")"):
            weighted.append(f"sum(n * ({e[4:-1]}))")
        elif e.startswith("max("):
            weighted.append(e)
        else:
            return None
    return f"SELECT sum(n){''.join(', ' + w for w in weighted)} FROM ({grouped_from})"


def _grouped_by_index(conn: sqlite3.Connection, sql: str, column: str) -> bool:
    """True when SQLite groups ``sql`` by scanning an index led by ``column`` (BINARY collation,
    not partial), so no sort is needed and equal values are byte-identical."""
    plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
    m = re.search(r"USING COVERING INDEX (\S+)", plan)
    if m is None or "TEMP B-TREE" in plan:
        return False
    index = m.group(1)
    first = [r for r in conn.execute("SELECT * FROM pragma_index_xinfo(?)", (index,)) if r[0] == 0]
    partial = [
        r
        for r in conn.execute(
            "SELECT name, partial FROM pragma_index_list(?)", (_table_of(conn, index),)
        )
        if r[0] == index and r[1]
    ]
    return bool(first) and first[0][2] == column and first[0][4] == "BINARY" and not partial


def _table_of(conn: sqlite3.Connection, index: str) -> str:
    row = conn.execute("SELECT tbl_name FROM sqlite_master WHERE name = ?", (index,)).fetchone()
    return str(row[0]) if row else ""


def _undecodable(conn: sqlite3.Connection, table: Table, columns: list[str]) -> set[str]:
    """Text columns holding invalid UTF-8. Fetching decodes every text value at C speed and
    fails on the first bad one; only then is each column checked value by value."""
    if not columns:
        return set()
    cur = conn.execute(f"SELECT {', '.join(map(quote, columns))} FROM {quote(table.name)}")
    try:
        for _batch in fetch_batches(cur, 10_000):
            pass
        return set()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc).lower():
            raise
    return set(columns)


def _looks_uuid(conn: sqlite3.Connection, table: Table, column: str) -> bool:
    """Probe one value: only columns whose first value is a UUID get counted."""
    first = _first_text(conn, table, column)
    return bool(first and _UUID_RE.fullmatch(first))


def _looks_iso(conn: sqlite3.Connection, table: Table, column: str) -> bool:
    """Probe one value: only columns whose first value is an ISO timestamp get counted."""
    first = _first_text(conn, table, column)
    return bool(first and _ISO_RE.match(first))


def _first_text(conn: sqlite3.Connection, table: Table, column: str) -> str | None:
    """The column's first non-NULL value when it is text, else None. Read as bytes: a first
    value of invalid UTF-8 made the fetch itself fail ('unexpected OperationalError: Could
    not decode'); it is an anomaly the profile counts, not a timestamp or a UUID."""
    c = quote(column)
    first = conn.execute(
        f"SELECT typeof({c}), CAST({c} AS BLOB) FROM {quote(table.name)} "
        f"WHERE {c} IS NOT NULL LIMIT 1"
    ).fetchone()
    if not first or first[0] != "text":
        return None
    try:
        return bytes(first[1]).decode("utf-8")
    except UnicodeDecodeError:
        return None


class _Readers:
    """Two profiling threads and the read-only connections they borrow. Opened once per plan
    (see :func:`shared_readers`): a new connection parses the whole schema, and with
    thousands of tables opening two per table cost more than the scans (O(tables^2))."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn, self.path = conn, path
        self.pool = ThreadPoolExecutor(max_workers=2)
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the file (``conn`` itself for :memory:)."""
        if not self.path:
            yield self.conn
            return
        with self._lock:
            other = self._idle.pop() if self._idle else None
        if other is None:
            other = open_sqlite(self.path, check_same_thread=False)
            register_functions(other)
            register_stand_ins(other)
        try:
            yield other
        finally:
            with self._lock:
                self._idle.append(other)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for other in self._idle:
            other.close()
        self._idle.clear()


_SHARED: dict[int, _Readers] = {}


@contextlib.contextmanager
def shared_readers(conn: sqlite3.Connection) -> Iterator[None]:
    """Profile every table of one plan with the same threads and connections."""
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    readers = _Readers(conn, path)
    _SHARED[id(conn)] = readers
    try:
        yield
    finally:
        _SHARED.pop(id(conn), None)
        readers.close()


@contextlib.contextmanager
def _readers_for(conn: sqlite3.Connection, path: str) -> Iterator[_Readers]:
    shared = _SHARED.get(id(conn))
    if shared is not None:
        yield shared
        return
    readers = _Readers(conn, path)  # profile_table called on its own
    try:
        yield readers
    finally:
        readers.close()


def _detail(
    conn: sqlite3.Connection, table: Table, name: str, json_col: bool, rows: int
) -> ColumnProfile:
    """Every condition for one column (only run for columns holding unexpected values)."""
    col = quote(name)
    kinds = [k for k in CONDITIONS if k != "json"]
    parts = [f"sum(CASE WHEN {CONDITIONS[k].format(c=col)} THEN 1 ELSE 0 END)" for k in kinds]
    parts.append(
        f"sum(CASE WHEN {CONDITIONS['json'].format(c=col) if json_col else '0'} THEN 1 ELSE 0 END)"
    )
    parts.append(f"min(CASE WHEN typeof({col}) = 'integer' THEN {col} END)")
    parts.append(f"max(CASE WHEN typeof({col}) = 'integer' THEN {col} END)")
    parts.append(f"max(CASE WHEN typeof({col}) = 'text' THEN length({col}) END)")
    row = conn.execute(
        f"SELECT {', '.join(parts)} FROM {quote(table.name)}", {"nonascii": NON_ASCII_GLOB}
    ).fetchone()
    by = dict(zip([*kinds, "json"], [v or 0 for v in row[:-3]], strict=True))
    return ColumnProfile(
        n_int=by["integer"],
        n_real=by["real"],
        n_text=by["text"],
        n_blob=by["blob"],
        n_null=by["null"],
        n_bool=by["bool"],
        n_bool_text=by["bool_text"],
        n_iso=by["iso"],
        n_date=by["date"],
        n_time=by["time"],
        n_json=by["json"],
        n_nul=by["nul"],
        n_bad_utf8=by["bad_utf8"],
        n_fraction=by["fraction"],
        min_int=row[-3],
        max_int=row[-2],
        max_len=row[-1],
    )


def key_sql(table: Table) -> list[str]:
    """Expressions that identify a row: rowid, or the primary key of a WITHOUT ROWID table."""
    if table.without_rowid:
        return [quote(c) for c in table.pk]
    return [quote(key_names(table)[0])]


def key_names(table: Table) -> list[str]:
    if table.without_rowid:
        return list(table.pk)
    name = rowid_name(table)
    if name is None:
        raise CheckFailed(
            f"table {table.name}: its columns {', '.join(ROWID_NAMES)} hide SQLite's row id, "
            "and it has no INTEGER PRIMARY KEY, so its rows have no key to copy, resume and "
            "verify them by",
            hint=f"in a copy of the database, rename one of those columns (ALTER TABLE "
            f"{quote(table.name)} RENAME COLUMN ...) and migrate the copy",
        )
    return [name]


def example(
    conn: sqlite3.Connection, table: Table, column: str, where: str
) -> tuple[dict[str, object], object] | None:
    """The key and value of the first row matching ``where`` (a predicate with ``{c}``)."""
    register_functions(conn)
    col = quote(column)
    # keys as bytes too: a WITHOUT ROWID table's text key can itself be invalid UTF-8
    keys = [f"CAST({k} AS BLOB), typeof({k})" for k in key_sql(table)]
    sql = (
        f"SELECT {', '.join(keys)}, CAST({col} AS BLOB), typeof({col}) FROM {quote(table.name)} "
        f"WHERE {where.format(c=col)} LIMIT 1"
    )
    row = conn.execute(sql, {"nonascii": NON_ASCII_GLOB}).fetchone()
    if row is None:
        return None
    pairs = [row[i : i + 2] for i in range(0, 2 * len(keys), 2)]
    key = {n: show_value(raw, kind) for n, (raw, kind) in zip(key_names(table), pairs, strict=True)}
    raw, kind = row[-2], row[-1]
    return key, show_value(raw, kind)


def show_value(raw: bytes | None, kind: str) -> object:
    """A value for a report: text decoded with escapes for bad bytes and NULs, blobs as hex."""
    if raw is None:
        return None
    if kind == "blob":
        return "x'" + raw.hex() + "'"
    text = raw.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    if kind == "integer":
        return int(text)
    if kind == "real":
        shown = float(text)  # a printed 1.79e308 can read back as inf: keep the text then
        return shown if math.isfinite(shown) else text
    return text if len(text) <= 80 else text[:77] + "..."
