"""Column defaults: SQLite's default expression -> PostgreSQL's, for the column's chosen type.

The one place defaults are translated (plan for column defaults, triggers for assignments).

A table of rules, not a chain of branches: each rule recognises one SQLite spelling (a
pattern over the default's text, outer parentheses removed) and gives the PostgreSQL
expression per kind of target type (``ts`` timestamptz, ``date``, ``text``, ``int`` bigint,
``num`` double precision/numeric, ``bool``). A kind missing from a rule means the default has
no equivalent for that type: an anomaly with a suggested cast rule, never an error at run
time. Spellings no rule knows fall through to :func:`_generic` (NULL, TRUE/FALSE, blobs,
``strftime(format, 'now')``), and what that does not know is an anomaly too.

SQLite evaluates ``'now'`` in UTC unless told ``'localtime'``; PostgreSQL's ``now()`` is an
instant, so a timestamptz column needs no zone, and text columns get UTC text as SQLite wrote.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emrops.migrate.convert import ConversionError, parse_ts

_UTC_TEXT = "to_char(now() AT TIME ZONE 'UTC', '{fmt}')"
_LOCAL_TEXT = "to_char(now(), '{fmt}')"
_DATETIME = "YYYY-MM-DD HH24:MI:SS"
_DAY = "YYYY-MM-DD"
_TIME = "HH24:MI:SS"
_EPOCH = "extract(epoch from now())::bigint"
_JULIAN = "(extract(epoch from now()) / 86400.0 + 2440587.5)"


@dataclass(frozen=True)
class Rule:
    pattern: str  # full match over the default's text, case-insensitive
    by_kind: dict[str, str]
    note: str = ""


_NOW = r"'now'"
_UTC = r"(?:\s*,\s*'utc')?"
_LOCAL = r"\s*,\s*'localtime'"
RULES: tuple[Rule, ...] = (
    Rule(
        r"CURRENT_TIMESTAMP|datetime\s*\(\s*" + _NOW + _UTC + r"\s*\)",
        {
            "ts": "CURRENT_TIMESTAMP",
            "date": "(now() AT TIME ZONE 'UTC')::date",
            "text": _UTC_TEXT.format(fmt=_DATETIME),
        },
    ),
    Rule(
        r"CURRENT_DATE|date\s*\(\s*" + _NOW + _UTC + r"\s*\)",
        {
            "ts": "date_trunc('day', now(), 'UTC')",
            "date": "(now() AT TIME ZONE 'UTC')::date",
            "text": _UTC_TEXT.format(fmt=_DAY),
        },
    ),
    Rule(
        r"CURRENT_TIME|time\s*\(\s*" + _NOW + _UTC + r"\s*\)",
        {"text": _UTC_TEXT.format(fmt=_TIME)},
    ),
    Rule(
        r"datetime\s*\(\s*" + _NOW + _LOCAL + r"\s*\)",
        {
            "ts": "CURRENT_TIMESTAMP",
            "date": "CURRENT_DATE",
            "text": _LOCAL_TEXT.format(fmt=_DATETIME),
        },
        note="datetime('now', 'localtime') default: new rows get the instant (timestamptz) or "
        "the server's local time (text); SQLite wrote local wall-clock time",
    ),
    Rule(
        r"date\s*\(\s*" + _NOW + _LOCAL + r"\s*\)",
        {"ts": "date_trunc('day', now())", "date": "CURRENT_DATE", "text": "CURRENT_DATE::text"},
    ),
    Rule(
        r"strftime\s*\(\s*'%s'\s*,\s*" + _NOW + r"\s*\)|unixepoch\s*\(\s*(?:'now')?\s*\)",
        {
            "int": _EPOCH,
            "num": f"{_EPOCH}::numeric",
            "text": f"{_EPOCH}::text",
            "ts": "date_trunc('second', now())",
        },
    ),
    Rule(
        r"julianday\s*\(\s*" + _NOW + r"\s*\)",
        {"num": _JULIAN, "text": f"{_JULIAN}::text"},
    ),
)
_COMPILED = [(re.compile(r.pattern, re.I), r) for r in RULES]

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def kind_of(pg_type: str) -> str:
    base = pg_type.split("(")[0].strip()
    return {
        "timestamptz": "ts",
        "date": "date",
        "text": "text",
        "varchar": "text",
        "citext": "text",
        "bigint": "int",
        "double precision": "num",
        "numeric": "num",
        "boolean": "bool",
        "jsonb": "json",
        "bytea": "bytea",
        "uuid": "uuid",
    }.get(base, "other")


@dataclass
class Default:
    sql: str | None  # the PostgreSQL default expression (None: no default)
    ok: bool  # False: an anomaly (message says why and suggests a rule)
    message: str = ""
    note: str = ""


def _unwrap(expr: str) -> str:
    text = expr.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    return text


def translate(expr: str | None, pg_type: str) -> Default:
    """The PostgreSQL default for ``expr`` on a column of ``pg_type``; ``ok`` False (with a
    message suggesting a cast rule) when it has no equivalent."""
    if expr is None:
        return Default(None, True)
    text = _unwrap(expr)
    kind = kind_of(pg_type)
    for pattern, rule in _COMPILED:
        if pattern.fullmatch(text):
            sql = rule.by_kind.get(kind)
            if sql is None:
                return Default(
                    None,
                    False,
                    f"default {expr} has no {pg_type} equivalent: add a cast rule "
                    'default = "<PostgreSQL expression>" (or default = "" for none)',
                )
            return Default(sql, True, note=rule.note)
    quoted = _DOUBLE_QUOTED.fullmatch(text)
    if quoted:  # SQLite takes a double-quoted word that names no column as a string
        text = "'" + quoted.group(1).replace('""', '"').replace("'", "''") + "'"
    if _NUMBER.fullmatch(text):
        return _number(expr, text, pg_type, kind)
    literal = _SINGLE_QUOTED.fullmatch(text)
    if literal:
        return _string(expr, text, literal.group(1).replace("''", "'"), pg_type, kind)
    return _generic(expr, text, kind)


def translate_default(expr: str | None, pg_type: str) -> tuple[str | None, bool]:
    """(PostgreSQL default SQL or None, translated?) for a SQLite default expression."""
    d = translate(expr, pg_type)
    return d.sql, d.ok


def _number(expr: str, text: str, pg_type: str, kind: str) -> Default:
    fits = {
        "int": _INTEGER.fullmatch(text) is not None and -(2**63) <= int(text) < 2**63,
        "num": True,
        "text": True,
        "bool": text in ("0", "1"),
    }.get(kind, False)
    if kind == "bool" and fits:
        return Default("true" if text == "1" else "false", True)
    if fits:
        return Default(text if kind != "text" else f"'{text}'", True)
    suggestion = {
        "ts": 'default = "" (no default), or type = "bigint" to keep the numbers, or '
        'epoch = "s" with type = "timestamptz" and default = "\'1970-01-01 00:00:00+00\'"',
        "date": 'default = "" (no default), or type = "bigint"',
    }.get(kind, 'default = "" (no default) or a default = "..." of the column type')
    return Default(
        None,
        False,
        f"numeric default {expr} does not fit {pg_type}: add a cast rule {suggestion}",
    )


def _string(expr: str, sql: str, value: str, pg_type: str, kind: str) -> Default:
    bad = ""
    if kind == "ts":
        try:
            parse_ts(value)
        except ConversionError:
            bad = "is not an ISO-8601 timestamp"
    elif kind == "date":
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            bad = "is not a YYYY-MM-DD date"
    elif kind == "int" and not _INTEGER.fullmatch(value.strip()):
        bad = "is not an integer"
    elif kind == "num" and not _NUMBER.fullmatch(value.strip()):
        bad = "is not a number"
    elif kind == "bool":
        if value.strip().lower() in ("0", "false", "f"):
            return Default("false", True)
        if value.strip().lower() in ("1", "true", "t"):
            return Default("true", True)
        bad = "is not a boolean"
    if bad:
        return Default(
            None,
            False,
            f"default {expr} {bad}, so it does not fit {pg_type}: add a cast rule "
            'default = "" (no default) or default = "..." of the column type',
        )
    return Default(sql, True)


def _generic(expr: str, text: str, kind: str) -> Default:
    """Spellings outside the rule table: NULL, TRUE/FALSE, x'..' blobs and
    ``strftime(format, 'now')``; anything else has no equivalent."""
    up = text.upper()
    if up == "NULL":
        return Default(None, True)
    if kind == "bool" and up in ("TRUE", "FALSE"):
        return Default(up.lower(), True)
    if kind in ("bytea", "other") and re.fullmatch(r"[xX]'[0-9a-fA-F]*'", text):
        return Default(f"'\\x{text[2:-1]}'::bytea", True)
    m = _NOW_FUNCS.fullmatch(text)
    if m:
        if kind in ("ts", "date"):
            return Default("CURRENT_TIMESTAMP" if kind == "ts" else _LOCAL_DATE_UTC, True)
        fmt = m.group("fmt")
        pg_fmt = _strftime_format(fmt) if fmt is not None else _DATETIME
        if pg_fmt is not None and kind == "text":
            return Default(_UTC_TEXT.format(fmt=pg_fmt), True)
    return Default(
        None,
        False,
        f"default {expr} has no PostgreSQL equivalent: add a cast rule "
        'default = "<PostgreSQL expression>" (or default = "" for none)',
    )


_LOCAL_DATE_UTC = "(now() AT TIME ZONE 'UTC')::date"


def _strftime_format(fmt: str) -> str | None:
    """A SQLite strftime format as a PostgreSQL to_char format."""
    out = []
    i = 0
    parts = {
        "%Y": "YYYY",
        "%m": "MM",
        "%d": "DD",
        "%H": "HH24",
        "%M": "MI",
        "%S": "SS",
        "%f": "SS.MS",
        "%j": "DDD",
    }
    literal = ""
    while i < len(fmt):
        two = fmt[i : i + 2]
        if two in parts:
            if literal:
                out.append('"' + literal + '"')
                literal = ""
            out.append(parts[two])
            i += 2
        elif fmt[i] == "%":
            return None
        else:
            literal += fmt[i]
            i += 1
    if literal:
        out.append('"' + literal + '"')
    return "".join(out)


_NOW_FUNCS = re.compile(
    r"""^\(*\s*(?:datetime|strftime)\s*\(\s*(?:'(?P<fmt>[^']*)'\s*,\s*)?'now'\s*\)\s*\)*$""", re.I
)
