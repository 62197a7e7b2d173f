"""COPY text formatted by SQLite itself, for tables whose values need no conversion.

For a table whose every column is *fast* (the profile proved each value already is what
COPY needs), SQLite builds the ``COPY ... FROM STDIN`` text lines in SQL (backslash, tab,
newline and CR escaped, NULL as ``\\N``) and hands them over in chunks of many rows, so no
Python work is done per row or per value. The bytes equal what psycopg's ``write_row`` sends
for the same values (the tests compare both paths on tricky text).

A chunk that holds invalid UTF-8 or a NUL byte (which the profile rules out, but the copy
never trusts blindly) is not sent: the caller re-reads that key range row by row, converting
every value, so a bad value is rejected or aborts the copy exactly as on the per-row path.

Reals. A ``double precision`` value is printed by ``printf('%!.17g', x)``, which round-trips
exactly (PostgreSQL's strtod reads back the same bits) for the magnitudes of :data:`REAL_LO` to
:data:`REAL_HI`, zero excepted: SQLite 3.40's printf is off by one unit in the last place for
some doubles above about 1e102 and prints -0.0 as ``0.0``. This is not taken on trust:
:func:`printf_exact` checks it against Python's correctly rounded parsing on a sample spanning
every binary exponent of that range, once per process, and double columns stay on the per-row
path if the library fails it. Integers print as their digits (PostgreSQL and Python both round
them to the nearest double). A ``numeric`` real must reach PostgreSQL as Python's shortest
``repr`` (as the per-row path sends it): SQLite's own text of a real (``%!.15g``) is that when
it reads back as the same double (:func:`short_sql`, checked by :func:`short_exact`), which
the usual sensor values (a few decimals) do. Other numeric reals and the double values outside
the checked range go through a registered Python function: the fallback runs only where
SQLite's text would differ. A value of another storage class (the plan is stale) comes back
as a NUL byte, which sends its chunk to the per-row path.

WITHOUT ROWID tables take this path too, in primary-key order (see reading.py). Not eligible
(the per-row path): tables with a column needing a Python conversion.
"""

from __future__ import annotations

import functools
import math
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from emrops.migrate import batching
from emrops.migrate.plan import ColumnPlan, TablePlan
from emrops.migrate.reading import Key, nth_after, order_sql, range_sql
from emrops.migrate.reflect import quote

CHUNK_ROWS = 10_000

# converters whose (fast) values SQLite can print as PostgreSQL reads them
_SQL_KINDS = {"pass", "text", "bigint", "bool", "jsonb", "ts", "bytea", "double", "numeric"}

# magnitudes whose printf('%!.17g') text round-trips (checked by printf_exact)
REAL_LO = 1e-300
REAL_HI = 1e90  # the first failures seen are near 1e102
_FALLBACK = "emrops_real_text"  # the registered Python function (see register)


def real_text(v: Any) -> str:
    """The text the per-row path sends for a number (``repr`` of a float, digits of an int);
    a NUL byte for anything else, so its chunk is re-read row by row and converted there."""
    if type(v) is float:
        return repr(v)
    if type(v) is int:
        return str(v)
    return "\x00"


def register(conn: sqlite3.Connection) -> None:
    """Register the fallback function :func:`column_sql` may call on ``conn``."""
    conn.create_function(_FALLBACK, 1, real_text, deterministic=True)


_EXPONENTS = (math.frexp(REAL_LO)[1] - 1, math.frexp(REAL_HI)[1])


def _sample() -> list[float]:
    """Doubles spanning every binary exponent of [REAL_LO, REAL_HI], both signs, plus edges."""
    rng = random.Random(20261204)
    lo, hi = _EXPONENTS
    out = [REAL_LO, REAL_HI, -REAL_LO, 0.1, 1 / 3, 2**53 + 0.0, 1e16, 1e15 + 0.3]
    for e in range(lo, hi):
        for _ in range(12):
            x = math.ldexp(1 + rng.getrandbits(52) / 2**52, e - 1)
            if REAL_LO <= x <= REAL_HI:
                out.append(x if rng.getrandbits(1) else -x)
    return out


@functools.cache
def printf_exact(samples: int = 0) -> bool:
    """True when this SQLite library's ``printf('%!.17g', x)`` reads back (by Python's correctly
    rounded float parsing, which equals PostgreSQL's strtod) as ``x`` for every double of the
    sample (``samples`` extra random doubles in range, for tests)."""
    values = _sample()
    rng = random.Random(samples)
    while len(values) < samples:
        x = math.ldexp(1 + rng.random(), rng.randint(*_EXPONENTS))
        if REAL_LO <= x <= REAL_HI:
            values.append(x)
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE f (x REAL)")
        conn.executemany("INSERT INTO f VALUES (?)", ((v,) for v in values))
        got = conn.execute("SELECT x, printf('%!.17g', x) FROM f").fetchall()
    finally:
        conn.close()
    return len(got) == len(values) and all(float(t) == x for x, t in got)


def short_sql(c: str) -> str:
    """SQL true when the real ``c`` has a plain decimal text of at most 15 significant digits:
    then ``CAST(c AS TEXT)`` (SQLite's ``%!.15g``) is Python's shortest ``repr`` of it. Only one
    decimal of at most 15 significant digits lies within half a unit in the last place of a
    double, so a 15-digit text that reads back as ``c`` is that decimal, which is also the
    shortest one (checked by :func:`short_exact`). Zero (SQLite prints -0.0 as ``0.0``) and
    exponent forms are left out."""
    return (
        f"({c} <> 0 AND instr(CAST({c} AS TEXT), 'e') = 0 "
        f"AND CAST(CAST({c} AS TEXT) AS REAL) = {c})"
    )


def _short_sample() -> list[float]:
    """Reals of every magnitude from 1e-5 to 1e16: sensor-like values rounded to 0-9 decimal
    places, and full-precision doubles (which need 16 or 17 digits: never short)."""
    rng = random.Random(1604)
    out = [0.1, 0.2, 0.3, 0.1 + 0.2, 1 / 3, 2 / 3, 1e15 - 1, 1e15 + 0.5, 1e-4, 9.999e-5, 5e-324]
    for exp in range(-5, 17):
        for places in range(10):
            for _ in range(4):
                x = round(rng.uniform(1, 10) * 10.0**exp, places)
                out += [x, -x, math.nextafter(x, math.inf), math.nextafter(x, 0)]
    return out


@functools.cache
def short_exact() -> bool:
    """True when, for every real of the sample, :func:`short_sql`'s test passing means that
    ``CAST(x AS TEXT)`` equals Python's ``repr(x)`` (both are exact decimal texts PostgreSQL
    reads; the per-row path sends ``repr``)."""
    values = _short_sample()
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE f (x REAL)")
        conn.executemany("INSERT INTO f VALUES (?)", ((v,) for v in values))
        got = conn.execute(f"SELECT x, CAST(x AS TEXT) FROM f WHERE {short_sql('x')}").fetchall()
    finally:
        conn.close()
    return len(got) > len(values) // 4 and all(repr(x) == t for x, t in got)


def fixed_sql(c: str, scale: int) -> str:
    """SQL true when the real ``c``, printed with ``scale`` decimals (``printf('%.Nf')``),
    reads back as itself with at most 15 significant digits: then that text is Python's
    shortest ``repr`` padded with zeros to the scale (the one such decimal, see
    :func:`short_sql`), which is numeric(p, scale)'s canonical text, no rounding involved.
    Two conversions per value, where the short text padded in SQL takes five."""
    return (
        f"({c} <> 0 AND {c} > -{10 ** (15 - min(scale, 15))} "
        f"AND {c} < {10 ** (15 - min(scale, 15))} "
        f"AND CAST(printf('%.{scale}f', {c}) AS REAL) = {c})"
    )


@functools.cache
def fixed_exact() -> bool:
    """True when, for every real of the sample and scales 0 to 6, :func:`fixed_sql`'s test
    passing means that the printed text equals the numeric canonical text Python computes."""
    from emrops.migrate.convert import canon_function

    values = _short_sample()
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE f (x REAL)")
        conn.executemany("INSERT INTO f VALUES (?)", ((v,) for v in values))
        for scale in range(7):
            canon = canon_function(f"numeric(30,{scale})")
            got = conn.execute(
                f"SELECT x, printf('%.{scale}f', x) FROM f WHERE {fixed_sql('x', scale)}"
            ).fetchall()
            if not got or any(canon(x) != t for x, t in got):
                return False
    finally:
        conn.close()
    return True


def _escaped(c: str) -> str:
    """COPY text escaping of a text value (only rewritten when it holds a special byte). The
    tab, newline and CR are literal characters in the SQL: char(9) would be a function call per
    value, and this runs on every text value of a chunk that needs escaping."""
    return (
        f"CASE WHEN instr({c}, '\\') OR instr({c}, '\t') OR instr({c}, '\n') "
        f"OR instr({c}, '\r') THEN replace(replace(replace(replace({c}, '\\', '\\\\'), "
        f"'\t', '\\t'), '\n', '\\n'), '\r', '\\r') ELSE {c} END"
    )


def column_sql(col: ColumnPlan, *, escape: bool = True) -> str | None:
    """SQL printing one column's value as COPY text (escaped, or ``escape=False`` raw), or None
    when it needs Python."""
    if not col.fast or col.converter not in _SQL_KINDS:
        return None
    c = quote(col.source)
    if col.converter in ("double", "numeric"):
        expr = _real_sql(c, double=col.converter == "double")
    elif col.converter == "bytea":
        # bytea in text COPY: \x + hex, the backslash itself escaped for COPY
        expr = f"'\\\\x' || lower(hex(CAST({c} AS BLOB)))"
    elif col.converter in ("bigint", "bool") or (col.converter == "pass" and col.identity):
        expr = f"CAST({c} AS TEXT)"  # integers only (the profile says so): decimal digits
    elif col.converter == "pass" and col.pg_type != "uuid":
        return None
    else:  # text, jsonb, ISO timestamps, UUID text: the text itself
        expr = _escaped(c) if escape else c
    # NULL as \N: tested on the value itself, as hex(NULL) is '' and not NULL
    return expr if _not_null(col) else f"CASE WHEN {c} IS NULL THEN '\\N' ELSE {expr} END"


def _real_sql(c: str, *, double: bool) -> str:
    """A number as the per-row path sends it (see the module docstring)."""
    fallback = f"{_FALLBACK}({c})"
    if double:
        real = (
            # not abs(): abs() of the smallest 64-bit integer is an error in SQLite
            f"CASE WHEN ({c} BETWEEN {REAL_LO!r} AND {REAL_HI!r} "
            f"OR {c} BETWEEN {-REAL_HI!r} AND {-REAL_LO!r}) "
            f"THEN printf('%!.17g', {c}) ELSE {fallback} END"
        )
    elif short_exact():  # numeric: Python's repr, which SQLite's text is when short
        real = f"CASE WHEN {short_sql(c)} THEN CAST({c} AS TEXT) ELSE {fallback} END"
    else:
        real = fallback
    return (
        f"CASE typeof({c}) WHEN 'real' THEN {real} "
        f"WHEN 'integer' THEN CAST({c} AS TEXT) ELSE {fallback} END"
    )


def joined_sql(terms: list[str], op: str) -> str:
    """``terms`` joined by the SQL operator ``op`` (``" || "``, ``" + "``), parenthesised as a
    balanced tree: SQLite refuses an expression nested deeper than 1000 levels, which a flat
    chain over the columns of a wide table is (``a || b || ...`` nests one level per term)."""
    if len(terms) <= 16:
        return op.join(terms)
    step = -(-len(terms) // 16)
    return op.join(f"({joined_sql(terms[i : i + step], op)})" for i in range(0, len(terms), step))


def _not_null(col: ColumnPlan) -> bool:
    return col.notnull or col.identity


def line_sql(tp: TablePlan, *, escape: bool = True) -> str | None:
    """SQL of one COPY text line (with its newline) per row, or None for the per-row path."""
    if not tp.columns:
        return None
    if any(c.converter == "double" for c in tp.columns) and not printf_exact():
        return None
    parts = [column_sql(c, escape=escape) for c in tp.columns]
    if any(p is None for p in parts):
        return None
    # literal tab and newline characters in the SQL (char(9) would be a function call per
    # column and row: 10% of the chunk's time)
    tab = "'\t'"
    line = [t for p in parts if p is not None for t in (tab, p)][1:]
    return joined_sql([*line, "'\n'"], " || ")


def _backslashes_sql(tp: TablePlan) -> str:
    """SQL counting the backslashes a raw line holds by itself: one per NULL (``\\N``), two
    per bytea value (``\\\\x``)."""
    terms = ["0"]
    for col in tp.columns:
        c = quote(col.source)
        if col.converter == "bytea":
            terms.append(f"2 * ({c} IS NOT NULL)")
        if not _not_null(col):
            terms.append(f"({c} IS NULL)")
    return joined_sql(terms, " + ")


@dataclass
class Chunk:
    after: Key | None  # the rows of the key range (after, hi] (see reading.py)
    hi: Key | None
    rows: int
    data: bytes | None  # COPY text, or None: re-read this range row by row


def _clean(data: bytes) -> bool:
    """No NUL byte and valid UTF-8 (what PostgreSQL text accepts)."""
    if b"\x00" in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def chunks(
    src: sqlite3.Connection,
    tp: TablePlan,
    rows: int = CHUNK_ROWS,
    *,
    first: int = batching.FIRST_ROWS,
    budget: int = batching.BUDGET,
) -> Iterator[Chunk]:
    """COPY text of ``tp`` in key order (rowid, or the primary key of a WITHOUT ROWID table),
    at most ``rows`` rows per chunk and about :data:`batching.BUDGET` bytes: the next chunk's
    row count follows the bytes per row of the last one (wide rows, e.g. documents of hundreds
    of KB, would otherwise build chunks past SQLite's 1 GB string limit); a range too big to
    build at all goes row by row, and the next chunks are a sixteenth of its size.

    Each chunk is first built from the raw values (cheap). It is sent as it is only when it
    provably equals the escaped text: exactly one tab per column boundary and one newline per
    row, no CR, and no backslash beyond those of its own NULL and bytea markers; so no value
    holds a byte that escaping would change. Otherwise the chunk is rebuilt with escaping in
    SQL (and the next chunk is built escaped directly, until one needs no escaping), and only a
    chunk with a NUL byte or invalid UTF-8 falls back to the row-by-row path.
    """
    raw = line_sql(tp, escape=False)
    escaped = line_sql(tp)
    if raw is None or escaped is None:
        raise ValueError(f"table {tp.source} cannot be formatted in SQL")
    register(src)
    t = quote(tp.source)
    order = order_sql(tp)

    def build(line: str, where: str) -> str:
        # count(line) < count(*) when a line came out NULL (a column the plan holds for never
        # NULL is NULL after all): group_concat skips NULLs, so such a chunk goes row by row
        return (
            "SELECT count(*), sum(bs), CAST(group_concat(line, '') AS BLOB), count(line) FROM "
            f"(SELECT {_backslashes_sql(tp)} AS bs, {line} AS line FROM {t}{where} "
            f"ORDER BY {order})"
        )

    tabs = len(tp.columns) - 1
    sizer = batching.RowBudget(rows, budget, first)
    after: Key | None = None
    # After a chunk that needed escaping the next one is built escaped at once (values with a
    # tab or newline tend to be common in a column, and building a chunk twice costs more than
    # escaping it); an escaped chunk in which escaping added no backslash switches back to raw.
    escape = False
    while True:
        # the chunk's last key first (a walk of the key's b-tree), so that every query of the
        # chunk reads the same closed range
        hi = nth_after(src, tp, after, sizer.rows)
        where, params = range_sql(tp, after, hi)
        try:
            count, backslashes, data, lines = src.execute(
                build(escaped if escape else raw, where), params
            ).fetchone()
        except (sqlite3.DataError, MemoryError, sqlite3.OperationalError) as exc:
            if not _too_big(exc):
                raise
            # the range's text is past SQLite's string limit (or memory): it goes row by row
            # (the copy reads those rows in byte-bounded batches) and the next ranges shrink
            sizer.shrink()
            yield Chunk(after, hi, 0, None)
            if hi is None:
                return
            after = hi
            continue
        if not count:
            return
        sizer.saw(count, len(data or b""))
        if lines != count:
            # a line is NULL when a column the plan holds for never NULL is NULL after all;
            # group_concat would skip it, so this range goes row by row (which rejects or
            # aborts on it) rather than losing the row
            yield Chunk(after, hi, count, None)
        else:
            data = data or b""
            if escape:
                escape = data.count(b"\\") != backslashes
            elif not (
                data.count(b"\t") == count * tabs
                and data.count(b"\n") == count
                and data.count(b"\\") == backslashes
                and b"\r" not in data
            ):
                data = src.execute(build(escaped, where), params).fetchone()[2] or b""
                escape = True
            # escaped text has exactly one newline per row; anything else (a line lost between
            # the two queries) goes row by row, and the target's count is the backstop after that
            whole = data.count(b"\n") == count
            yield Chunk(after, hi, count, data if whole and _clean(data) else None)
        if hi is None:
            return
        after = hi


def _too_big(exc: BaseException) -> bool:
    """SQLite could not build a value that large (SQLITE_TOOBIG, or out of memory)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "too big" in text or "out of memory" in text
