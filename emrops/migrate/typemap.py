"""Pure type-mapping policy: SQLite declared type + profile of the values (+ a cast rule) ->
a PostgreSQL type, the converter the copy uses, a reason, and the anomalies that block it.

No I/O here: everything is decided from plain values, so it is property-tested (Hypothesis).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emrops.migrate.convert import EPOCH_UNITS
from emrops.migrate.profile import ColumnProfile, time_declared
from emrops.migrate.reflect import PG_MAX_NUMERIC, PG_MAX_VARCHAR, affinity, declared_precision

PG_MAX_IDENT = 63

# converter kinds understood by emrops.migrate.convert
CONVERTERS = (
    "pass",
    "text",
    "bytea",
    "bigint",
    "double",
    "numeric",
    "bool",
    "ts",
    *(f"ts_epoch_{unit}" for unit in EPOCH_UNITS),
    "date",
    "time",
    "jsonb",
    "text_only",
    "bytea_only",
    "uuid",
)

# cast-file type names -> (pg type, converter)
CAST_TYPES = {
    "text": ("text", "text"),
    "bytea": ("bytea", "bytea"),
    "bigint": ("bigint", "bigint"),
    "integer": ("bigint", "bigint"),
    "double precision": ("double precision", "double"),
    "numeric": ("numeric", "numeric"),
    "boolean": ("boolean", "bool"),
    "timestamptz": ("timestamptz", "ts"),
    "date": ("date", "date"),
    "time": ("time", "time"),
    "jsonb": ("jsonb", "jsonb"),
    "uuid": ("uuid", "uuid"),
}


@dataclass
class Anomaly:
    """Values that do not fit the chosen type: ``condition`` is a profile.CONDITIONS key."""

    condition: str
    count: int
    message: str
    key: dict[str, Any] | None = None
    value: Any = None
    where: str | None = None  # predicate (with {c}) selecting the offending values


@dataclass
class Mapping:
    pg_type: str
    converter: str
    reason: str
    identity: bool = False
    anomalies: list[Anomaly] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # lossy-but-ruled or ambiguous choices


def _length(declared: str) -> int | None:
    m = re.search(r"\(\s*(\d+)\s*\)", declared)
    return int(m.group(1)) if m else None


def _kinds(p: ColumnProfile) -> list[str]:
    return [
        k
        for k, n in (
            ("integer", p.n_int),
            ("real", p.n_real),
            ("text", p.n_text),
            ("blob", p.n_blob),
        )
        if n
    ]


def _text_checks(p: ColumnProfile, m: Mapping) -> None:
    if p.n_nul:
        m.anomalies.append(
            Anomaly(
                "nul",
                p.n_nul,
                "text holds NUL bytes, which PostgreSQL text "
                "cannot store; cast the column to bytea",
            )
        )
    if p.n_bad_utf8:
        m.anomalies.append(
            Anomaly("bad_utf8", p.n_bad_utf8, "text is not valid UTF-8; cast the column to bytea")
        )


def map_column(
    declared: str,
    p: ColumnProfile,
    *,
    rowid_alias: bool = False,
    rule: dict[str, Any] | None = None,
) -> Mapping:
    """Choose the PostgreSQL type for one column. Never returns float4/real.

    A cast rule decides first, then the rowid alias, then the first row of :data:`RULES`
    whose test matches the declared type (its upper-case text and SQLite affinity); a column
    no row matches (no declared type, or BLOB) follows its values."""
    rule = rule or {}
    if rule.get("type") or rule.get("epoch"):
        return _ruled(declared, p, rule)
    if rowid_alias:
        return Mapping("bigint", "pass", "INTEGER PRIMARY KEY (rowid alias)", identity=True)
    up = declared.upper()
    aff = affinity(declared)
    for test, decide in RULES:
        if test(up, aff):
            return decide(declared, up, p)
    return _by_values(declared, p)


def _boolean(declared: str, up: str, p: ColumnProfile) -> Mapping:
    m = Mapping("boolean", "bool", "BOOLEAN declared, values are 0/1")
    bad = p.n_values - p.n_bool - p.n_bool_text
    if bad:
        m.anomalies.append(
            Anomaly(
                "bool_bad",
                bad,
                "values other than 0/1 or boolean text ('t'/'f', 'true'/'false', 'yes'/'no', "
                "'on'/'off') in a boolean column",
            )
        )
    if p.n_bool_text:
        m.reason = "BOOLEAN declared, values are 0/1 or boolean text"
        m.notes.append(f"{p.n_bool_text} boolean text value(s) ('t', 'false', ...) converted")
    return m


def _json(declared: str, up: str, p: ColumnProfile) -> Mapping:
    m = Mapping("jsonb", "jsonb", "JSON declared, every value parses")
    bad = p.n_values - p.n_json
    if bad:
        m.anomalies.append(Anomaly("json_bad", bad, "values that are not valid JSON"))
    _text_checks(p, m)
    return m


def _date(declared: str, up: str, p: ColumnProfile) -> Mapping:
    m = Mapping("date", "date", "DATE declared, values are YYYY-MM-DD")
    if p.n_values - p.n_date:
        m.anomalies.append(
            Anomaly("date_bad", p.n_values - p.n_date, "values that are not YYYY-MM-DD dates")
        )
    return m


def _time(declared: str, up: str, p: ColumnProfile) -> Mapping:
    m = Mapping("time", "time", "TIME declared, values are HH:MM[:SS[.ffffff]]")
    if p.n_values - p.n_time:
        m.anomalies.append(
            Anomaly(
                "time_bad",
                p.n_values - p.n_time,
                "values that are not HH:MM[:SS[.ffffff]] times of day (00:00 to 23:59)",
            )
        )
    return m


_EPOCH_HINT = (
    'add a cast rule epoch = "s", "ms" or "us" (Unix time), "julian" (Julian day numbers, '
    'as julianday() gives) or "2001" (seconds since 2001-01-01, Apple Core Data), or '
    'type = "double precision" to keep the numbers'
)


def _timestamp(declared: str, up: str, p: ColumnProfile) -> Mapping:
    if (p.n_int or p.n_real) and not p.n_text:
        kind = "real" if p.n_real else "integer"
        m = Mapping("timestamptz", "ts", f"timestamp declared but holds {kind}s")
        m.anomalies.append(
            Anomaly(kind, p.n_int + p.n_real, f"numbers in a timestamp column: {_EPOCH_HINT}")
        )
        return m
    m = Mapping("timestamptz", "ts", "timestamp declared, ISO-8601 text (naive = UTC)")
    if p.n_date:
        m.notes.append(f"{p.n_date} date-only value(s) become midnight UTC")
    bad = p.n_values - p.n_iso - p.n_date
    if bad:
        m.anomalies.append(Anomaly("iso_bad", bad, "values that are not ISO-8601 timestamps"))
    return m


def _integer(declared: str, up: str, p: ColumnProfile) -> Mapping:
    m = Mapping("bigint", "bigint", f"{declared or 'INTEGER'}: SQLite integers are 64-bit")
    for condition, n, message in (
        ("fraction", p.n_fraction, "reals with a fraction, or beyond the 64-bit range, in an "
         "integer column"),
        ("text", p.n_text, "text in an integer column"),
        ("blob", p.n_blob, "blobs in an integer column"),
    ):  # fmt: skip
        if n:
            m.anomalies.append(Anomaly(condition, n, message))
    return m


def _real(declared: str, up: str, p: ColumnProfile) -> Mapping:
    m = Mapping("double precision", "double", f"{declared}: SQLite REAL is 8-byte (never float4)")
    for kind, n in (("text", p.n_text), ("blob", p.n_blob)):
        if n:
            m.anomalies.append(Anomaly(kind, n, f"{kind} values in a real column"))
    return m


def _uuid(declared: str, up: str, p: ColumnProfile) -> Mapping:
    """A column declared UUID or GUID: uuid when every value is one, else text with a note
    (SQLite gives these names NUMERIC affinity, but they hold text). Numbers alone stay
    numeric, as before."""
    if p.n_blob and _kinds(p) == ["blob"]:
        # 16-byte UUIDs (.NET's and Core Data's): kept as the bytes, whose order differs
        # between writers (RFC 4122 or .NET's little-endian fields)
        return Mapping("bytea", "bytea", f"{declared} holding only blobs: bytes as stored")
    if not p.n_text:
        return _numeric(declared, up, p)
    if p.n_uuid == p.n_values:
        return Mapping("uuid", "pass", f"{declared} holding only UUIDs")
    m = _chars(declared, up, p)
    m.notes.append(f"not every value is a UUID ({p.n_values - p.n_uuid}): kept as text")
    for kind, n in (("integer", p.n_int), ("real", p.n_real)):
        if n:
            m.anomalies.append(Anomaly(kind, n, f"{kind} values in a UUID column"))
    return m


def text_mapping(declared: str, p: ColumnProfile) -> Mapping:
    """The plain text mapping of a TEXT-affinity column (what it is when its values do not
    make it a timestamp or a UUID)."""
    return _chars(declared, declared.upper(), p)


def _text(declared: str, up: str, p: ColumnProfile) -> Mapping:
    if ("UUID" in up or "CHAR(32)" in up.replace(" ", "")) and p.n_text and p.n_uuid == p.n_values:
        return Mapping("uuid", "pass", f"{declared} holding only UUIDs (SQLAlchemy Uuid)")
    if p.n_text and p.n_iso == p.n_values and not (p.n_nul or p.n_bad_utf8):
        return Mapping("timestamptz", "ts", "text holding only ISO-8601 timestamps (naive = UTC)")
    return _chars(declared, up, p)


def _chars(declared: str, up: str, p: ColumnProfile) -> Mapping:
    """Text: varchar(n) when every value fits a declared CHAR length, else text."""
    length = _length(declared)
    if length and length > PG_MAX_VARCHAR:
        length = None  # PostgreSQL's varchar(n) stops at 10 MiB: text, which has no limit
    if length and "CHAR" in up and (p.max_len or 0) <= length:
        m = Mapping(f"varchar({length})", "text", f"{declared}: longest value {p.max_len or 0}")
    else:
        m = Mapping("text", "text", f"{declared}: text")
        if length and "CHAR" in up:
            m.notes.append(f"values up to {p.max_len} characters exceed {declared}: kept as text")
    _text_checks(p, m)
    if p.n_blob:
        m.anomalies.append(Anomaly("blob", p.n_blob, "blobs in a text column"))
    return m


def _numeric(declared: str, up: str, p: ColumnProfile) -> Mapping:
    prec = declared_precision(declared)
    pg = f"numeric({prec[0]},{prec[1]})" if prec else "numeric"
    m = Mapping(pg, "numeric", f"{declared}: exact numeric")
    if prec is None and re.search(r"\(\s*\d+", declared):
        m.notes.append(
            f"{declared}: precision and scale outside 1 to {PG_MAX_NUMERIC} and 0 or more; "
            "unconstrained numeric"
        )
    for kind, n in (("text", p.n_text), ("blob", p.n_blob)):
        if n:
            m.anomalies.append(Anomaly(kind, n, f"{kind} values in a numeric column"))
    return m


# declared types that name numbers (NUMERIC, NUMBER, DECIMAL, DEC, MONEY, SMALLMONEY; not ENUM)
_NUMBER_NAME = re.compile(r"(?<![A-Z])(NUM|DEC|MONEY|SMALLMONEY)")


def _named(declared: str, up: str, p: ColumnProfile) -> Mapping:
    """A declared type SQLite gives NUMERIC affinity by default although it names no number
    (``ENUM('a','b')``, ``SET(...)``, ``STRING``, ``GEOMETRY``): what the values are decides.
    Text alone is text (SQLite stored every value that looked like a number as one), blobs
    alone bytea, numbers alone numeric; a mix is an anomaly naming the kinds held."""
    kinds = _kinds(p)
    if kinds == ["text"]:
        m = _chars(declared, up, p)
        m.reason = f"{declared}: names no number and holds only text"
        return m
    if kinds == ["blob"]:
        return Mapping("bytea", "bytea", f"{declared}: names no number and holds only blobs")
    if "text" in kinds or "blob" in kinds:
        return _by_values(declared, p)  # mixed: a cast rule says text or bytea
    return _numeric(declared, up, p)


# (test on the upper-case declared type and its affinity, decision): the first match decides
RULES: tuple[
    tuple[Callable[[str, str], bool], Callable[[str, str, ColumnProfile], Mapping]], ...
] = (
    (lambda up, _aff: "BOOL" in up, _boolean),
    (lambda up, _aff: "JSON" in up, _json),
    (lambda up, _aff: time_declared(up), _time),
    (lambda up, _aff: up.startswith("DATE") and "TIME" not in up, _date),
    (lambda up, _aff: "TIME" in up or "DATE" in up, _timestamp),
    (lambda up, aff: aff == "NUMERIC" and ("UUID" in up or "GUID" in up), _uuid),
    (lambda _up, aff: aff == "INTEGER", _integer),
    (lambda _up, aff: aff == "REAL", _real),
    (lambda _up, aff: aff == "TEXT", _text),
    (lambda up, aff: aff == "NUMERIC" and not _NUMBER_NAME.search(up), _named),
    (lambda _up, aff: aff == "NUMERIC", _numeric),
)


# no declared type (or BLOB): the kinds of values held decide
_BY_VALUES: dict[tuple[str, ...], tuple[str, str, str]] = {
    ("integer",): ("bigint", "bigint", "no declared type; every value is an integer"),
    ("real",): ("double precision", "double", "no declared type; values are numbers"),
    ("integer", "real"): ("double precision", "double", "no declared type; values are numbers"),
    ("blob",): ("bytea", "bytea", ""),
    (): ("bytea", "bytea", ""),
}


DOUBLE_EXACT = 2**53  # integers up to this magnitude are exact in a double


def _past_double(p: ColumnProfile) -> bool:
    return (p.min_int is not None and p.min_int < -DOUBLE_EXACT) or (
        p.max_int is not None and p.max_int > DOUBLE_EXACT
    )


def _by_values(declared: str, p: ColumnProfile) -> Mapping:
    kinds = tuple(_kinds(p))
    if kinds == ("text",):
        if p.n_date == p.n_values:
            return Mapping("date", "date", "no declared type; every value is a YYYY-MM-DD date")
        m = Mapping("text", "text", "no declared type; every value is text")
        _text_checks(p, m)
        return m
    if kinds == ("integer", "real") and _past_double(p):
        # a double holds integers exactly only up to 2^53: numeric keeps both kinds exactly
        return Mapping(
            "numeric",
            "numeric",
            "no declared type; integers and reals, integers past 2^53 (exact numeric)",
        )
    if kinds in _BY_VALUES:
        pg, conv, reason = _BY_VALUES[kinds]
        return Mapping(pg, conv, reason or f"{declared or 'no declared type'}: bytes")
    blob = "blob" in kinds
    m = Mapping(
        "bytea" if blob else "text", "bytea_only" if blob else "text_only", "mixed value types"
    )
    m.anomalies.append(
        Anomaly(
            "mixed",
            p.n_values,
            f"mixed value types ({', '.join(kinds)}): add a "
            'cast rule type = "text" or "bytea" to accept the conversion',
        )
    )
    return m


def is_fast(m: Mapping, p: ColumnProfile, select_blob: bool) -> bool:
    """True when every profiled value already is what COPY needs (no per-value conversion)."""
    if m.anomalies:
        return False
    kinds = set(_kinds(p))
    return {
        "pass": True,
        "text": kinds <= {"text"},
        "bigint": kinds <= {"integer"},
        "double": kinds <= {"integer", "real"},
        "numeric": kinds <= {"integer", "real"},
        "bool": kinds <= {"integer"},  # text ('t'/'f') is converted per value
        "jsonb": kinds <= {"text"},
        "ts": kinds <= {"text"},
        "bytea": select_blob,
    }.get(m.converter, False)


def _ruled(declared: str, p: ColumnProfile, rule: dict[str, Any]) -> Mapping:
    name = str(rule.get("type") or "timestamptz").lower()  # epoch alone: a timestamp
    if name not in CAST_TYPES:
        raise ValueError(f"unknown cast type {rule['type']!r} (known: {', '.join(CAST_TYPES)})")
    pg, conv = CAST_TYPES[name]
    epoch = rule.get("epoch")
    if epoch and pg != "timestamptz":
        raise ValueError(f'epoch is for type = "timestamptz", not {name!r}')
    if epoch:
        if epoch not in EPOCH_UNITS:
            raise ValueError(
                f"epoch must be one of {', '.join(map(repr, EPOCH_UNITS))}, not {epoch!r}"
            )
        conv = f"ts_epoch_{epoch}"
    m = Mapping(
        pg,
        conv,
        f"cast rule: {declared or 'untyped'} -> {pg}" + (f" (epoch {epoch})" if epoch else ""),
    )
    if conv == "text":
        _text_checks(p, m)
    kinds = _kinds(p)
    if len(kinds) > 1:
        m.notes.append(f"mixed value types ({', '.join(kinds)}) converted to {pg} by the cast rule")
    return m


def shorten(name: str, taken: set[str]) -> str:
    """A PostgreSQL identifier (<= 63 bytes) for ``name``: unchanged when it fits, else a
    truncated prefix plus a hash of the full name, deterministic and unique within ``taken``."""
    raw = name.encode("utf-8")
    if len(raw) <= PG_MAX_IDENT and name not in taken:
        return name
    salt = 0
    while True:
        digest = hashlib.sha1(f"{name}\x00{salt}".encode()).hexdigest()[:8]
        prefix = raw[: PG_MAX_IDENT - 9].decode("utf-8", errors="ignore")
        candidate = f"{prefix}_{digest}"
        if candidate not in taken:
            return candidate
        salt += 1
