"""Per-value conversion (SQLite value -> value for COPY) and the canonical text both sides hash.

The canonical text of a value is defined per PostgreSQL type so that PostgreSQL can compute it
in SQL (:func:`pg_canon_sql`) and Python can compute it from the converted value
(:func:`canon_function`): the two must agree byte for byte, which the tests check.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any

from emrops.migrate.reflect import quote

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICRO = timedelta(microseconds=1)
NULL_MARK = "\x1eN"
SEP = "\x1f"


class ConversionError(ValueError):
    """A value that cannot be converted to the planned type."""


def _to_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise ConversionError("bytes are not valid UTF-8") from None
    return repr(v) if isinstance(v, float) else str(v)


def _check_text(v: str) -> str:
    if "\x00" in v:
        raise ConversionError("text holds a NUL byte")
    return v


def _to_bytea(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    return _to_text(v).encode("utf-8")


_INTEGER_TEXT = re.compile(r"[+-]?[0-9]{1,19}")


def _to_bigint(v: Any) -> int:
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        if -(2**63) <= v < 2**63:  # 2**63 itself is a float but not a bigint
            return int(v)
        raise ConversionError(f"out of the 64-bit integer range: {v!r}")
    if isinstance(v, str) and _INTEGER_TEXT.fullmatch(v):  # a cast rule's '42' (as CAST does)
        n = int(v)
        if -(2**63) <= n < 2**63:
            return n
        raise ConversionError(f"out of the 64-bit integer range: {v!r}")
    raise ConversionError(f"not an integer: {v!r}")


def _to_double(v: Any) -> float:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    raise ConversionError(f"not a number: {v!r}")


# the text PostgreSQL's numeric input reads (Decimal also takes '1_000', 'sNaN', 'NaN12' and
# digits of other scripts, which PostgreSQL refuses)
_NUMERIC_TEXT = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?inf(?:inity)?|nan",
    re.IGNORECASE | re.ASCII,
)


def _to_numeric(v: Any) -> Any:
    if isinstance(v, int | float):
        return v
    text = _to_text(v).strip()
    if not _NUMERIC_TEXT.fullmatch(text):
        raise ConversionError(f"not a number: {v!r}")
    return text


# boolean text PostgreSQL's boolean input accepts (case and surrounding spaces aside)
BOOL_TEXT = {"t": True, "true": True, "y": True, "yes": True, "on": True, "1": True}
BOOL_TEXT |= {"f": False, "false": False, "n": False, "no": False, "off": False, "0": False}


def _to_bool(v: Any) -> bool:
    if v in (0, 1) and not isinstance(v, float | str):
        return bool(v)
    if isinstance(v, str):
        value = BOOL_TEXT.get(v.strip().lower())
        if value is not None:
            return value
    raise ConversionError(f"not 0/1 or boolean text: {v!r}")


def parse_ts(v: Any) -> datetime:
    """ISO-8601 text as SQLite writes it (space or T, optional fraction and zone); naive = UTC."""
    if not isinstance(v, str):
        raise ConversionError(f"not an ISO-8601 timestamp: {v!r}")
    text = v.strip()
    # SQLite and PostgreSQL take a lower-case zulu and a space before the zone; Python not
    text = _ZONE_GAP.sub(r"\1\2", text)
    if text.endswith("z"):
        text = text[:-1] + "Z"
    extra = _LONG_FRACTION.search(text)
    try:
        moment = datetime.fromisoformat(text)
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        if extra is not None:
            # Python truncates past microseconds, PostgreSQL rounds (rint of the fraction
            # parsed as a double times 10^6): do as PostgreSQL does, so both sides agree
            # (in UTC, so that rounding up at the end of 9999 in a zone east of it fits)
            micros = round(float(extra.group(1)) * 1_000_000)
            moment = moment.astimezone(UTC).replace(microsecond=0) + timedelta(microseconds=micros)
    except (ValueError, OverflowError):
        raise ConversionError(f"not an ISO-8601 timestamp: {v!r}") from None
    return moment


_ZONE_GAP = re.compile(r"(\d)\s+([Zz]|[+-]\d\d(?::?\d\d)?)$")
# a fraction of a second with more digits than PostgreSQL keeps (microseconds)
_LONG_FRACTION = re.compile(r":\d\d(\.\d{7,})")


# the ISO-8601 shapes PostgreSQL reads as Python does (extended date, optional time to the
# minute or more, fraction with a point, zone as Z or hours[:minutes]); Python also takes
# week dates (2024-W01-1), an hour alone (T10) and a comma before the fraction, which
# PostgreSQL refuses
_PG_ISO = re.compile(
    r"\s*\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d*)?)?)?"
    r"(?:\s*(?:[Zz]|[+-]\d\d(?::?\d\d)?))?\s*",
    re.ASCII,
)


def _ts_text(v: Any) -> str | datetime:
    """Validate an ISO-8601 timestamp and pass the text on: PostgreSQL (session TimeZone UTC)
    parses it faster than Python can build and dump a datetime. A shape PostgreSQL would not
    read goes as the datetime Python parsed."""
    moment = parse_ts(v)
    return v if _PG_ISO.fullmatch(v) else moment


def _canon_uuid(v: Any) -> str:
    """32 lower-case hex digits (how SQLAlchemy stores a UUID on SQLite, so the usual value
    is its own canonical form, cheap to check on both sides)."""
    return uuid.UUID(v).hex


_MICROS = re.compile(r"[0-9 :-]{19}\.[0-9]{6}").fullmatch  # no zone, no other characters


def canon_ts(v: Any) -> str:
    """UTC 'YYYY-MM-DD HH:MM:SS.ffffff' (what to_char(..., 'YYYY-MM-DD HH24:MI:SS.US') gives)."""
    if type(v) is str and len(v) == 26 and v[10] == " " and v[19] == "." and _MICROS(v):
        return v  # already naive UTC with microseconds: the common SQLAlchemy form
    u = (v if isinstance(v, datetime) else parse_ts(v)).astimezone(UTC)
    # not strftime: its %Y does not pad years before 1000 on glibc (999-12-31)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d} "
        f"{u.hour:02d}:{u.minute:02d}:{u.second:02d}.{u.microsecond:06d}"
    )


# cast rule epoch = ...: (the instant of 0, microseconds per unit); julian counts days from
# noon UTC of 4714-11-24 BC (SQLite's julianday()): 2440587.5 is the Unix epoch
EPOCH_UNITS: dict[str, tuple[datetime, int]] = {
    "s": (EPOCH, 1_000_000),
    "ms": (EPOCH, 1_000),
    "us": (EPOCH, 1),
    "2001": (datetime(2001, 1, 1, tzinfo=UTC), 1_000_000),  # Apple Core Data, NSDate
    "julian": (EPOCH, 86_400_000_000),  # of v - 2440587.5
}
_JULIAN_UNIX = 2440587.5


def _micros(v: int | float, halves: int, scale: int) -> int:
    """``(v - halves / 2) * scale`` rounded half to even, computed exactly: a double's
    product in floating point is rounded first, which put 1 in 8 Unix-seconds values
    (1709957222.5798254 s is ...825.4013 us) one microsecond off."""
    num, den = v.as_integer_ratio()
    num, den = (2 * num - halves * den) * scale, 2 * den
    whole, rest = divmod(num, den)
    return whole + (2 * rest > den or (2 * rest == den and whole % 2 == 1))


def _epoch(unit: str) -> Callable[[Any], datetime]:
    base, scale = EPOCH_UNITS[unit]
    halves = int(_JULIAN_UNIX * 2) if unit == "julian" else 0

    def conv(v: Any) -> datetime:
        if isinstance(v, str):
            try:  # a value the app already wrote as an ISO-8601 timestamp is that instant
                return parse_ts(v).astimezone(UTC)
            except ConversionError:
                raise ConversionError(
                    f"neither a number of {unit} since the epoch nor an ISO-8601 timestamp: {v!r}"
                ) from None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConversionError(f"not a number of {unit} since the epoch: {v!r}")
        try:
            return base + timedelta(microseconds=_micros(v, halves, scale))
        except (OverflowError, ValueError):  # beyond datetime's range, or inf
            raise ConversionError(f"epoch out of range: {v!r}") from None

    return conv


def epoch_number(unit: str, moment: datetime) -> int | float:
    """The number SQLite held for ``moment`` under the cast rule epoch = ``unit`` (an integer
    when it is one): the inverse of the conversion, for writing back to SQLite."""
    base, scale = EPOCH_UNITS[unit]
    micros = (moment - base) // timedelta(microseconds=1)
    if unit == "julian":
        return micros / scale + _JULIAN_UNIX
    whole, rest = divmod(micros, scale)
    return whole if not rest else micros / scale


def _to_date(v: Any) -> date:
    try:
        return date.fromisoformat(v)
    except (TypeError, ValueError):
        raise ConversionError(f"not a YYYY-MM-DD date: {v!r}") from None


_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])(?::([0-5][0-9])(?:\.([0-9]{1,6}))?)?")


def _to_time(v: Any) -> str:
    """A time of day as PostgreSQL's time reads it (the text is passed on, checked)."""
    if not isinstance(v, str) or _TIME.fullmatch(v) is None:
        raise ConversionError(f"not an HH:MM[:SS[.ffffff]] time of day: {v!r}")
    return v


def canon_time(v: Any) -> str:
    """PostgreSQL's text of a time: HH:MM:SS, then the fraction without trailing zeros."""
    m = _TIME.fullmatch(v)
    if m is None:
        raise ConversionError(f"not an HH:MM[:SS[.ffffff]] time of day: {v!r}")
    hours, minutes, seconds, fraction = m.groups()
    text = f"{hours}:{minutes}:{seconds or '00'}"
    fraction = (fraction or "").rstrip("0")
    return f"{text}.{fraction}" if fraction else text


def _text_only(v: Any) -> str:
    if not isinstance(v, str):
        raise ConversionError(f"{type(v).__name__} value in a text column: {v!r}")
    return _check_text(v)


def _bytes_only(v: Any) -> bytes:
    if not isinstance(v, bytes):
        raise ConversionError(f"{type(v).__name__} value in a bytea column: {v!r}")
    return v


def _to_jsonb(v: Any) -> str:
    if isinstance(v, float) and not math.isfinite(v):  # 'inf' is no JSON number
        raise ConversionError(f"JSON has no infinite numbers: {v!r}")
    text = _to_text(v)
    if "\\u0000" in text:
        raise ConversionError("JSON holds \\u0000, which jsonb rejects")
    return text


CONVERT: dict[str, Callable[[Any], Any]] = {
    "pass": lambda v: v,
    "text": lambda v: _check_text(_to_text(v)),
    "bytea": _to_bytea,
    "bigint": _to_bigint,
    "double": _to_double,
    "numeric": _to_numeric,
    "bool": _to_bool,
    "ts": _ts_text,
    **{f"ts_epoch_{unit}": _epoch(unit) for unit in EPOCH_UNITS},
    "date": _to_date,
    "time": _to_time,
    "jsonb": _to_jsonb,
    "text_only": _text_only,
    "uuid": lambda v: str(uuid.UUID(_to_text(v))),
    "bytea_only": _bytes_only,
}

# converters that return their input for the values the profile allowed (fast path)
IDENTITY = {"pass"}


# --- canonical text -------------------------------------------------------------------------


def canon_kind(pg_type: str) -> str:
    base = pg_type.split("(")[0].strip()
    if base in ("bigint", "integer", "smallint"):
        return "int"
    if base == "numeric":
        return "numeric"
    if base in ("text", "varchar", "character varying"):
        return "text"
    return {
        "boolean": "bool",
        "double precision": "float",
        "bytea": "bytea",
        "timestamptz": "ts",
        "uuid": "uuid",
        "date": "date",
        "time": "time",
        "jsonb": "jsonb",
    }.get(base, "text")


def numeric_precision(pg_type: str) -> int | None:
    if "(" not in pg_type:
        return None
    return int(pg_type.split("(")[1].split(",")[0].rstrip(") "))


def numeric_scale(pg_type: str) -> int | None:
    if "," in pg_type:
        return int(pg_type.split(",")[1].rstrip(") "))
    if "(" in pg_type:
        return 0
    return None


_WIDE = Context(prec=2000)  # quantize never runs out of digits (PostgreSQL's limit is 1000+)


def _canon_numeric(scale: int | None, precision: int | None = None) -> Callable[[Any], str]:
    quantum = Decimal(1).scaleb(-scale) if scale is not None else None
    limit = Decimal(10) ** (precision - (scale or 0)) if precision is not None else None
    zeros = "0" * (scale or 0)

    def exact(v: Any) -> str:
        d = Decimal(repr(v)) if isinstance(v, float) else Decimal(str(v))
        if not d.is_finite():
            # numeric holds NaN, and unconstrained numeric Infinity (PostgreSQL 14+), which
            # numeric(p,s) refuses
            if d.is_qnan():
                return "NaN"
            if quantum is not None or d.is_snan():
                raise ConversionError(f"not a finite number: {v!r}")
            return "-Infinity" if d < 0 else "Infinity"
        if quantum is not None:
            d = d.quantize(quantum, rounding=ROUND_HALF_UP, context=_WIDE)  # as PostgreSQL
        if limit is not None and abs(d) >= limit:
            # PostgreSQL refuses it ("numeric field overflow"), so the copy rejected the row
            raise ConversionError(f"does not fit numeric({precision},{scale or 0}): {v!r}")
        if d.is_zero():
            d = d.copy_abs()
        return format(d, "f")

    def canon(v: Any) -> str:
        # the common values without a Decimal: an int, or a float whose repr has no exponent
        # and no more fraction digits than the scale (so nothing is rounded); same text. A value
        # at or over numeric(p,s)'s limit goes to exact, which refuses it as PostgreSQL does
        if limit is not None and type(v) in (int, float) and not -limit < v < limit:
            return exact(v)
        if type(v) is int:
            return f"{v}.{zeros}" if zeros else str(v)
        if type(v) is float and v:
            r = repr(v)
            if "e" not in r and r[-1].isdigit():
                if scale is None:
                    return r
                whole, _, frac = r.partition(".")
                if not zeros:
                    if frac == "0":
                        return whole
                elif len(frac) <= scale:
                    return f"{whole}.{frac}{zeros[len(frac) :]}"
        return exact(v)

    canon.exact = exact  # type: ignore[attr-defined]  # the reference (tests compare)
    return canon


def _jsonb_str(s: str) -> str:
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch < " ":
            out.append(
                {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(
                    ch, f"\\u{ord(ch):04x}"
                )
            )
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _jsonb_value(v: Any) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Decimal):
        return format(v.copy_abs() if v.is_zero() else v, "f")
    if isinstance(v, str):
        return _jsonb_str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_jsonb_value(x) for x in v) + "]"
    keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
    return "{" + ", ".join(f"{_jsonb_str(k)}: {_jsonb_value(v[k])}" for k in keys) + "}"


def _no_constant(name: str) -> Any:
    raise ConversionError(f"JSON constant {name} is not valid in jsonb")


# The jsonb text is built by the C JSON decoder and encoder: numbers other than integers come
# through the decoder as marked strings (\x00N<token>\x00, which no jsonb string can hold),
# keys are put in jsonb's order (byte length, then bytes; the last duplicate wins) as each
# object is decoded, and the encoder's escaping is PostgreSQL's (\" \\ \b \f \n \r \t,
# \u00xx for other control characters, the rest as itself). 2-3x faster than building the text
# in Python, which :func:`_jsonb_value` still does where the fast form cannot be trusted.
_NUMBER = re.compile(r'"\\u0000N([^"\\]*)\\u0000"')


def _mark_number(token: str) -> str:
    return "\x00N" + token + "\x00"


def _key_order(key: str) -> tuple[int, bytes]:
    raw = key.encode("utf-8", "surrogatepass")
    return len(raw), raw


def _jsonb_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    pairs.sort(key=lambda kv: _key_order(kv[0]))  # stable: a later duplicate stays later
    return dict(pairs)


_DECODER = json.JSONDecoder(
    parse_float=_mark_number, parse_constant=_no_constant, object_pairs_hook=_jsonb_object
)
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(", ", ": "), allow_nan=False, check_circular=False
)


# The same encoder made once (JSONEncoder.encode builds it anew on every call: 60% of its
# cost on a small document), and the decoder's C scanner called straight (decode() adds two
# regex whitespace matches); documents with whitespace around them take decode().
_ENCODE_C = getattr(json.encoder, "c_make_encoder", None)
_SCAN = getattr(_DECODER, "scan_once")  # noqa: B009 - not in the stubs
_JSON_SPACE = " \t\n\r"


def _make_encode() -> Callable[[Any], str]:
    if _ENCODE_C is None:  # a Python without the C accelerator
        return _ENCODER.encode
    iterencode = _ENCODE_C(
        None,  # markers: check_circular=False
        _ENCODER.default,
        json.encoder.encode_basestring,  # ensure_ascii=False
        None,  # indent
        ": ",
        ", ",
        False,  # sort_keys (the decoder ordered them)
        False,  # skipkeys
        False,  # allow_nan (no float reaches it: numbers are marked strings)
    )
    return lambda obj: "".join(iterencode(obj, 0))


_ENCODE = _make_encode()


def _decode(text: str) -> Any:
    """``_DECODER.decode(text)``, raising ValueError for what is not one JSON document."""
    if not text or text[0] in _JSON_SPACE or text[-1] in _JSON_SPACE:
        return _DECODER.decode(text)
    try:
        obj, end = _SCAN(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("extra data after the JSON document")
    return obj


def _jsonb_number(m: re.Match[str]) -> str:
    token = m.group(1)
    if "e" in token or "E" in token or token.startswith("-0"):
        return _jsonb_value(Decimal(token))  # numeric's form: no exponent, no -0
    return token  # digits as written: numeric keeps the scale (1.50)


@functools.lru_cache(maxsize=1 << 12)  # repeated documents; bounded memory (big documents)
def canon_jsonb(text: str) -> str:
    """The text PostgreSQL prints for ``text::jsonb`` (key order, spacing, numbers)."""
    if "\\u0000" in text:  # jsonb rejects it; and it could spell a number marker
        return _jsonb_reference(text)
    try:
        out = _ENCODE(_decode(text))
    except ValueError as exc:
        if isinstance(exc, ConversionError):
            raise
        return _jsonb_reference(text)  # invalid JSON or an integer over 4300 digits
    return _NUMBER.sub(_jsonb_number, out) if "\\u0000N" in out else out


def _jsonb_reference(text: str) -> str:
    """:func:`canon_jsonb` the slow way (every value built in Python; the tests compare)."""
    return _jsonb_value(
        json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constant)
    )


def canon_function(pg_type: str) -> Callable[[Any], str]:
    """Python canonical text of a converted (non-NULL) value of ``pg_type``."""
    kind = canon_kind(pg_type)
    if kind == "text":
        return _to_text
    if kind == "int":
        return str
    if kind == "bool":
        return lambda v: "true" if v else "false"
    if kind == "float":
        return lambda v: struct.pack(">d", v).hex()
    if kind == "numeric":
        return _canon_numeric(numeric_scale(pg_type), numeric_precision(pg_type))
    if kind == "bytea":
        return lambda v: v.hex()
    if kind == "ts":
        return canon_ts
    if kind == "uuid":
        return _canon_uuid
    if kind == "date":
        return lambda v: v.isoformat()
    if kind == "time":
        return canon_time
    return canon_jsonb


def pg_canon_sql(column: str, pg_type: str) -> str:
    """SQL computing the canonical text of ``column`` on PostgreSQL (NULL stays NULL)."""
    c = quote(column)
    kind = canon_kind(pg_type)
    return {
        "text": f"{c}::text",
        "int": f"{c}::text",
        "bool": f"{c}::text",
        "float": f"encode(float8send({c}), 'hex')",
        "numeric": f"{c}::text",
        "bytea": f"encode({c}, 'hex')",
        "ts": f"to_char({c}, 'YYYY-MM-DD HH24:MI:SS.US')",
        "date": f"{c}::text",
        "time": f"{c}::text",
        "jsonb": f"{c}::text",
        "uuid": f"encode(uuid_send({c}), 'hex')",  # half the cost of replace({c}::text, ...)
    }[kind]


def pg_row_sql(columns: list[tuple[str, str]]) -> str:
    """SQL text of a row's canonical form: values joined by SEP, NULL as NULL_MARK."""
    parts = [f"coalesce({pg_canon_sql(name, t)}, E'\\x1eN')" for name, t in columns]
    return " || E'\\x1f' || ".join(parts) if parts else "''"


def pg_hash_sql(row_sql: str) -> str:
    """A signed 64-bit hash of a row's canonical text (the first 8 bytes of its MD5)."""
    return f"('x' || left(md5({row_sql}), 16))::bit(64)::bigint"


def row_hash(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode("utf-8")).digest()[:8], "big", signed=True)


def make_row_hasher(pg_types: list[str], notnull: list[bool]) -> Callable[[Any], int]:
    """Hash of a converted row (a sequence), matching :func:`pg_hash_sql` over :func:`pg_row_sql`.

    Generated code: one expression per column, so hashing costs about one string join and one
    MD5 per row (it runs while the rows stream into COPY)."""
    env: dict[str, Any] = {
        "md5": hashlib.md5,
        "from_bytes": int.from_bytes,
        "NM": NULL_MARK,
        "SEP": SEP,
    }
    parts = []
    for i, (pg_type, nn) in enumerate(zip(pg_types, notnull, strict=True)):
        kind = canon_kind(pg_type)
        v = f"r[{i}]"
        if kind == "text":
            expr = v
        elif kind == "int":
            expr = f"str({v})"
        else:
            env[f"f{i}"] = canon_function(pg_type)
            expr = f"f{i}({v})"
        parts.append(expr if nn else f"(NM if {v} is None else {expr})")
    body = "SEP.join((" + ", ".join(parts) + ",))" if parts else "''"
    src = (
        "def hasher(r):\n"
        f"    return from_bytes(md5(({body}).encode('utf-8', 'surrogatepass')).digest()[:8], "
        "'big', signed=True)\n"
    )
    exec(compile(src, "<emrops row hasher>", "exec"), env)  # noqa: S102 - generated from types
    return env["hasher"]  # type: ignore[no-any-return]
