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

import math
import re
import sqlite3
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from emrops.migrate.convert import BOOL_TEXT, CONVERT, ConversionError, parse_ts

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
    by_kind: dict[str, str]  # may use the pattern's named groups: {n}
    note: str = ""


# Random defaults. SQLite's randomblob(N) is N random bytes; PostgreSQL's core has no random
# bytes but gen_random_uuid() (13+, a strong random source): 32 hex digits of which 30 are
# random (a UUID's version and variant digits, the 13th and 17th, are fixed), so N random bytes
# are the hex of enough UUIDs cut to 2N digits. random() is a random 64-bit integer.
_RANDOM_NOTE = (
    "random default: new rows get random bytes from PostgreSQL's gen_random_uuid(), whose "
    "13th and 17th hex digits of every 32 are fixed"
)
_RANDOM_INT_NOTE = (
    "random() default: new rows get a random 64-bit integer from PostgreSQL's random()"
)
_RANDOM_INT = (
    "('x' || substr(md5(random()::text || clock_timestamp()::text), 1, 16))::bit(64)::bigint"
)


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
        {"text": _UTC_TEXT.format(fmt=_TIME), "time": "(now() AT TIME ZONE 'UTC')::time(0)"},
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
        # epoch milliseconds, whole seconds times 1000 (strftime('%s') has no fraction)
        r"(?:CAST\s*\(\s*)?\(?\s*(?:strftime\s*\(\s*'%s'\s*,\s*" + _NOW + r"\s*\)"
        r"|unixepoch\s*\(\s*(?:'now')?\s*\))\s*(?:AS\s+INTEGER\s*\)\s*)?\)?"
        r"\s*\*\s*1000(?:\s+AS\s+INTEGER\s*\))?",
        {
            "int": "extract(epoch from date_trunc('second', now()))::bigint * 1000",
            "num": "(extract(epoch from date_trunc('second', now()))::bigint * 1000)::numeric",
        },
    ),
    Rule(
        # epoch milliseconds with the fraction, the idiom of apps that want ms timestamps
        r"CAST\s*\(\s*\(\s*julianday\s*\(\s*" + _NOW + r"\s*\)\s*-\s*2440587\.5\s*\)"
        r"\s*\*\s*86400000(?:\.0*)?\s+AS\s+INTEGER\s*\)",
        {
            "int": "floor(extract(epoch from now()) * 1000)::bigint",
            "num": "floor(extract(epoch from now()) * 1000)::numeric",
        },
    ),
    Rule(
        r"julianday\s*\(\s*" + _NOW + r"\s*\)",
        {"num": _JULIAN, "text": f"{_JULIAN}::text"},
    ),
)
_BLOB = r"randomblob\s*\(\s*(?P<n>\d{1,4})\s*\)"
RULES += (
    Rule(
        r"lower\s*\(\s*hex\s*\(\s*" + _BLOB + r"\s*\)\s*\)",
        {"text": "{hex}"},
        _RANDOM_NOTE,
    ),
    Rule(
        # SQLite's hex() is upper-case
        r"(?P<upper>upper\s*\(\s*)?hex\s*\(\s*" + _BLOB + r"\s*\)(?(upper)\s*\))",
        {"text": "upper({hex})"},
        _RANDOM_NOTE,
    ),
    Rule(_BLOB, {"bytea": "decode({hex}, 'hex')", "other": "decode({hex}, 'hex')"}, _RANDOM_NOTE),
    Rule(
        r"random\s*\(\s*\)",
        {"int": _RANDOM_INT, "num": f"{_RANDOM_INT}::numeric"},
        _RANDOM_INT_NOTE,
    ),
)
_COMPILED = [(re.compile(r.pattern, re.I), r) for r in RULES]


def _random_hex(n: int) -> str:
    """SQL of ``n`` random bytes as lower-case hex digits (see _RANDOM_NOTE)."""
    uuids = " || ".join(["gen_random_uuid()::text"] * -(-2 * n // 32))
    digits = f"replace({uuids}, '-', '')"
    return digits if 2 * n % 32 == 0 and n <= 16 else f"substr({digits}, 1, {2 * n})"


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_DOUBLE_QUOTED = re.compile(r'"((?:[^"]|"")*)"')
_SINGLE_QUOTED = re.compile(r"'((?:[^']|'')*)'")


def kind_of(pg_type: str) -> str:
    base = pg_type.split("(")[0].strip()
    return {
        "timestamptz": "ts",
        "date": "date",
        "time": "time",
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
        match = pattern.fullmatch(text)
        if match:
            sql = rule.by_kind.get(kind)
            if sql is None:
                return Default(
                    None,
                    False,
                    f"default {expr} has no {pg_type} equivalent: add a cast rule "
                    'default = "<PostgreSQL expression>" (or default = "" for none)',
                )
            groups = match.groupdict()
            if groups.get("n") is not None:
                n = int(groups["n"])
                if n < 1:
                    break  # randomblob(0) is one byte in SQLite: no rule
                sql = sql.format(hex=_random_hex(n))
            return Default(sql, True, note=rule.note)
    quoted = _DOUBLE_QUOTED.fullmatch(text)
    if quoted:  # SQLite takes a double-quoted word that names no column as a string
        text = "'" + quoted.group(1).replace('""', '"').replace("'", "''") + "'"
    if _NUMBER.fullmatch(text):
        return _number(expr, text, pg_type, kind)
    literal = _SINGLE_QUOTED.fullmatch(text)
    if literal:
        return _string(expr, text, literal.group(1).replace("''", "'"), pg_type, kind)
    generic = _generic(expr, text, kind)
    constant = None if generic.ok else _constant(text)
    if constant is not None and constant != text:
        d = translate(constant, pg_type)
        if d.ok and d.sql is not None:
            d.note = f"default {expr} is the constant {constant}"
        return d
    return generic


_WORD = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
# literals' words, and CAST(... AS <type>)'s (the type names SQLite's affinity rules read)
_CONSTANT_WORDS = re.compile(
    r"TRUE|FALSE|NULL|[xX][0-9a-fA-F]*|[eE][0-9]*"
    r"|AS|INT|INTEGER|BIGINT|TEXT|REAL|NUMERIC|BLOB|FLOAT|DOUBLE|VARCHAR|CHAR|DECIMAL",
    re.I,
)
# SQLite's deterministic functions whose value over literals is a literal too (json('[]') is
# '[]'); none of them reads the clock or a random source
_PURE_FUNCTIONS = frozenset(
    [
        "json",
        "json_object",
        "json_array",
        "json_quote",
        "json_insert",
        "json_set",
        "json_replace",
        "json_remove",
        "json_patch",
        "lower",
        "upper",
        "trim",
        "ltrim",
        "rtrim",
        "replace",
        "substr",
        "substring",
        "hex",
        "char",
        "printf",
        "format",
        "abs",
        "round",
        "coalesce",
        "ifnull",
        "nullif",
        "length",
        "quote",
        "unicode",
        "zeroblob",
        "concat",
        "concat_ws",
        "cast",
    ]
)
_CALL = re.compile(r"([A-Za-z_][A-Za-z_0-9]*)\s*\(")


def _constant(text: str) -> str | None:
    """The literal a constant expression evaluates to (SQLite's hex integers 0x10, TRUE and
    FALSE, arithmetic such as 60 * 60 * 24, string concatenation, json('[]')): literals,
    operators and pure functions only, so nothing that changes between rows (the clock,
    randomblob(), CURRENT_TIME) is frozen.
    Evaluated by SQLite on a private in-memory connection, with its length and its steps
    limited; None when it is not such an expression."""
    bare = re.sub(r"'(?:[^']|'')*'", "''", text)
    calls = {m.group(1).lower() for m in _CALL.finditer(bare)}
    if not calls <= _PURE_FUNCTIONS:
        return None
    bare = _CALL.sub("(", bare)
    if any(not _CONSTANT_WORDS.fullmatch(w) for w in _WORD.findall(bare)):
        return None
    values = _evaluate(text, times=1, steps=10_000)
    if values is None:
        return None
    value = values[0]
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return "x'" + bytes(value).hex() + "'"


def translate_default(expr: str | None, pg_type: str) -> tuple[str | None, bool]:
    """(PostgreSQL default SQL or None, translated?) for a SQLite default expression."""
    d = translate(expr, pg_type)
    return d.sql, d.ok


def _whole(text: str) -> str:
    """A real literal with a whole value as its integer ('1.0', '2e0'), as SQLite's INTEGER
    affinity stores it (DEFAULT 1.0 gives rows 1); anything else unchanged."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        return text
    if value.is_finite() and value == value.to_integral_value():
        return str(int(value))
    return text


def _number(expr: str, text: str, pg_type: str, kind: str) -> Default:
    if kind == "int":
        text = _whole(text)
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
    elif kind == "time":
        try:
            CONVERT["time"](value)
        except ConversionError:
            bad = "is not an HH:MM[:SS[.ffffff]] time"
    elif kind == "int" and not _INTEGER.fullmatch(value.strip()):
        bad = "is not an integer"
    elif kind == "num" and not _NUMBER.fullmatch(value.strip()):
        bad = "is not a number"
    elif kind == "bool":
        # the boolean text the column's values may hold ('yes', 'on', 'n', ...), as they are
        # converted: 'yes' was a value the copy took and a default plan refused
        truth = BOOL_TEXT.get(value.strip().lower())
        if truth is not None:
            return Default("true" if truth else "false", True)
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
    uuid = _random_uuid(text, kind)
    if uuid is not None:
        return Default(uuid, True, note="random UUID default: new rows get gen_random_uuid()")
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

_UUID_TEXT = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", re.I
)
_SAMPLES = 64


def _evaluate(text: str, *, times: int, steps: int) -> list[Any] | None:
    """``SELECT (text)`` evaluated ``times`` times by SQLite on a private in-memory connection
    (a default cannot name a column), its result at most 4 KB and each evaluation at most
    ``steps`` VM steps (a runaway expression is aborted); None when SQLite refuses it."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 4096)
        conn.set_progress_handler(lambda: 1, steps)
        return [conn.execute(f"SELECT ({text})").fetchone()[0] for _ in range(times)]
    except (sqlite3.Error, sqlite3.Warning, OverflowError):
        return None
    finally:
        conn.close()


def _random_uuid(text: str, kind: str) -> str | None:
    """gen_random_uuid() for a random default that spells a version-4 UUID in text (the
    SQLite idiom glues randomblob() pieces with dashes, a '4' and one of '89ab'), found by
    evaluating it: every one of 64 values a distinct UUID of one letter case. Evaluated on a
    private in-memory connection (a default cannot name a column), with its length and
    its number of steps limited; anything else: None."""
    if kind not in ("text", "uuid") or "random" not in text.lower():
        return None
    values = _evaluate(text, times=_SAMPLES, steps=100_000)
    if values is None or not all(isinstance(v, str) and _UUID_TEXT.fullmatch(v) for v in values):
        return None
    if len(set(values)) != _SAMPLES:
        return None
    if kind == "uuid":
        return "gen_random_uuid()"
    if all(v == v.lower() for v in values):
        return "gen_random_uuid()::text"
    return "upper(gen_random_uuid()::text)" if all(v == v.upper() for v in values) else None


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
