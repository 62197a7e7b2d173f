"""SQLite's date and time functions (date, time, datetime, julianday, unixepoch, strftime)
with their modifiers, as PostgreSQL expressions over a ``timestamp`` in UTC.

SQLite computes in UTC on text; the target keeps timestamps as ``timestamptz``, so a value is
first brought to a UTC ``timestamp``, then modified, then formatted as SQLite would print it.
A modifier or format that has no equivalent here leaves the call untranslated, so PostgreSQL
rejects it and the object is reported with the SQL.
"""

from __future__ import annotations

import re

from sqlglot import exp

from emrops.migrate.sql.coerce import fill
from emrops.migrate.sql.types import kind

_UNITS = {
    "day": "day",
    "days": "day",
    "hour": "hour",
    "hours": "hour",
    "minute": "minute",
    "minutes": "minute",
    "second": "second",
    "seconds": "second",
    "month": "month",
    "months": "month",
    "year": "year",
    "years": "year",
}

# strftime conversion -> to_char pattern (None: computed separately below)
_FORMAT = {
    "Y": "YYYY",
    "m": "MM",
    "d": "DD",
    "H": "HH24",
    "M": "MI",
    "S": "SS",
    "f": "SS.MS",
    "j": "DDD",
    "e": "FMDD",
    "I": "HH12",
    "p": "AM",
    "F": "YYYY-MM-DD",
    "T": "HH24:MI:SS",
    "R": "HH24:MI",
    "D": "YYYY-MM-DD",
}
_SPECIAL = {
    "s": "CAST(CAST(TRUNC(EXTRACT(EPOCH FROM __t)) AS BIGINT) AS TEXT)",
    "w": "CAST(CAST(EXTRACT(DOW FROM __t) AS INT) AS TEXT)",
    "u": "CAST(CAST(EXTRACT(ISODOW FROM __t) AS INT) AS TEXT)",
    "J": "CAST(EXTRACT(EPOCH FROM __t) / 86400.0 + 2440587.5 AS TEXT)",
    "%": "'%'",
}


def _base(value: exp.Expr, unixepoch: bool) -> exp.Expr | None:
    """The time value as a UTC ``timestamp`` expression."""
    if isinstance(value, exp.Literal) and value.is_string and value.this.lower() == "now":
        return fill("CAST(NOW() AT TIME ZONE 'UTC' AS TIMESTAMP)")
    k = kind(value)
    if unixepoch:
        return fill("(TO_TIMESTAMP(__x) AT TIME ZONE 'UTC')", x=value)
    if k == "timestamp":
        return fill("(__x AT TIME ZONE 'UTC')", x=value)
    if k == "date":
        return fill("CAST(__x AS TIMESTAMP)", x=value)
    if k in ("integer", "real", "numeric"):  # a Julian day number
        return fill("(TO_TIMESTAMP((__x - 2440587.5) * 86400.0) AT TIME ZONE 'UTC')", x=value)
    if k in ("text", "literal_text", "unknown"):
        return fill(TEXT_TIME, x=value)
    return None


# A time value in text as SQLite reads it: YYYY-MM-DD, then optionally [ T]HH:MM[:SS[.f]] and
# a zone (Z, or [+-]HH:MM after an optional space, converted to UTC). Text SQLite does not
# read ('not a date', '2024-13-01', '2024-01-01 25:00') is NULL, as in SQLite; a plain CAST
# raised "invalid input syntax for type timestamp" whenever a view or CHECK met such a row,
# and ignored the zone. Built from its parts, so a day past the month's end overflows into
# the next (SQLite prints '2024-02-30' unmodified; after a modifier it overflows the same).
# Not read here (NULL, where SQLite reads them): times without a date (2000-01-01 there),
# Julian day numbers in text, year 0000. Every function is IMMUTABLE (CHECKs and indexes).
_TEXT_RE = (
    "^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])"
    "-(0[1-9]|[12][0-9]|3[01])"
    "(?:[ T]([01][0-9]|2[0-4]):([0-5][0-9])(?::([0-5][0-9](?:[.][0-9]+)?))?"
    "(?: ?(?:([zZ])|([-+])([0-9]{2}):([0-9]{2})))?)?$"
)


def _part(i: int, cast: str = "INT") -> str:
    return f"CAST((REGEXP_MATCH(CAST(__x AS TEXT), '{_TEXT_RE}'))[{i}] AS {cast})"


TEXT_TIME = (
    f"CASE WHEN CAST(__x AS TEXT) ~ '{_TEXT_RE}' THEN "
    f"MAKE_TIMESTAMP({_part(1)}, {_part(2)}, 1, 0, 0, 0)"
    f" + ({_part(3)} - 1) * INTERVAL '1 day'"
    f" + COALESCE({_part(4)}, 0) * INTERVAL '1 hour'"
    f" + COALESCE({_part(5)}, 0) * INTERVAL '1 minute'"
    f" + COALESCE({_part(6, 'NUMERIC')}, 0) * INTERVAL '1 second'"
    f" - CASE {_part(8, 'TEXT')} WHEN '-' THEN -1 WHEN '+' THEN 1 ELSE 0 END"
    f" * (COALESCE({_part(9)}, 0) * 60 + COALESCE({_part(10)}, 0)) * INTERVAL '1 minute'"
    " END"
)


def _modify(ts: exp.Expr, modifier: str) -> exp.Expr | None:
    mod = modifier.strip().lower()
    m = re.fullmatch(r"([+-]?\s*\d+(?:\.\d+)?)\s+(\w+)", mod)
    if m and m.group(2) in _UNITS:
        amount = m.group(1).replace(" ", "")
        unit = _UNITS[m.group(2)]
        if unit in ("month", "year"):
            # SQLite adds to the month (or year) field and lets the day overflow into the
            # next month (01-31 '+1 month' is 03-02 or 03-03, 2024-02-29 '+1 year' is
            # 2025-03-01); PostgreSQL's interval clamps to the month's last day. So the
            # first of the month is moved and the offset into the month added back.
            # Fractions of months and years are not translated (SQLite adds them as days).
            if "." in amount:
                return None
            return fill(
                f"DATE_TRUNC('month', __t) + INTERVAL '{amount} {unit}'"
                " + (__t - DATE_TRUNC('month', __t))",
                t=ts,
            )
        return fill(f"__t + INTERVAL '{amount} {unit}'", t=ts)
    m = re.fullmatch(r"start of (month|year|day)", mod)
    if m:
        return fill(f"DATE_TRUNC('{m.group(1)}', __t)", t=ts)
    if mod in ("utc", "localtime"):
        return ts  # values are UTC on both sides here
    return None


def _format(ts: exp.Expr, fmt: str) -> exp.Expr | None:
    pieces: list[exp.Expr] = []
    pattern = ""
    i = 0

    def flush() -> None:
        nonlocal pattern
        if pattern:
            pieces.append(fill(f"TO_CHAR(__t, '{pattern}')", t=ts))
            pattern = ""

    while i < len(fmt):
        ch = fmt[i]
        if ch == "%" and i + 1 < len(fmt):
            conv = fmt[i + 1]
            if conv in _FORMAT:
                pattern += _FORMAT[conv]
            elif conv in _SPECIAL:
                flush()
                pieces.append(fill(_SPECIAL[conv], t=ts))
            else:
                return None
            i += 2
            continue
        if ch == "'":
            return None
        pattern += f'"{ch}"' if ch.isalpha() or ch == '"' else ch
        i += 1
    flush()
    if not pieces:
        return exp.Literal.string("")
    out = pieces[0]
    for p in pieces[1:]:
        out = exp.DPipe(this=out, expression=p)
    return out


_RESULT = {
    "date": "%Y-%m-%d",
    "datetime": "%Y-%m-%d %H:%M:%S",
    "time": "%H:%M:%S",
}


def translate(name: str, args: list[exp.Expr]) -> exp.Expr | None:
    """One SQLite date function call, or None when it cannot be translated."""
    fmt = None
    if name == "strftime":
        if not args or not isinstance(args[0], exp.Literal):
            return None
        fmt, args = args[0].this, args[1:]
    if not args:
        args = [exp.Literal.string("now")]
    mods = []
    for a in args[1:]:
        if not (isinstance(a, exp.Literal) and a.is_string):
            return None
        mods.append(a.this)
    unixepoch = any(m.strip().lower() == "unixepoch" for m in mods)
    mods = [m for m in mods if m.strip().lower() != "unixepoch"]
    ts = _base(args[0], unixepoch)
    if ts is None:
        return None
    for mod in mods:
        ts = _modify(ts, mod)
        if ts is None:
            return None
    result: exp.Expr | None
    if name == "julianday":
        result = fill("EXTRACT(EPOCH FROM __t) / 86400.0 + 2440587.5", t=ts)
        type_ = "double precision"
    elif name == "unixepoch":
        result = fill("CAST(TRUNC(EXTRACT(EPOCH FROM __t)) AS BIGINT)", t=ts)
        type_ = "bigint"
    else:
        result = _format(ts, fmt if fmt is not None else _RESULT[name])
        type_ = "text"
    if result is not None:
        result.type = exp.DataType.build(type_, dialect="postgres")
    return result


def date_function(node: exp.Expr) -> exp.Expr | None:
    if isinstance(node, exp.Anonymous):
        args = list(node.expressions)
    else:  # exp.Date: date(x[, modifier, ...])
        args = [node.this, *node.expressions]
    return translate(node.name.lower() if isinstance(node, exp.Anonymous) else "date", args)


def time_to_str(node: exp.TimeToStr) -> exp.Expr | None:
    """sqlglot reads ``strftime(fmt, x)`` as TimeToStr(TsOrDsToTimestamp(x), fmt)."""
    value = node.this
    if isinstance(value, exp.TsOrDsToTimestamp):
        value = value.this
    fmt = node.args.get("format")
    if not isinstance(fmt, exp.Literal):
        return None
    return translate("strftime", [fmt, value])
