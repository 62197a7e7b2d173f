"""SQLite functions PostgreSQL lacks or computes differently (rows of ``ANONYMOUS`` and the
function rows of ``rewrite.RULES``)."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlglot import exp

from emrops.migrate.sql import dates
from emrops.migrate.sql.coerce import fill, to_integer, to_number, to_text, typed
from emrops.migrate.sql.types import kind


def group_concat(node: exp.GroupConcat) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    if node.args.get("separator") is None:
        node.set("separator", exp.Literal.string(","))
    return typed(node, "text")


def json_extract(node: exp.Expr) -> exp.Expr | None:
    """The path functions sqlglot writes take json: text and jsonb columns are cast. The
    result is text (SQLite returns the JSON value's own SQL type), except as an ORDER BY key:
    there SQLite sorts NULL, then numbers (true and false as 1 and 0) by value, then text,
    where text alone put '100' before '3' and NULL last."""
    node.set("this", exp.cast(node.this, "json"))
    if isinstance(node, exp.JSONExtractScalar) and isinstance(node.parent, exp.Ordered):
        return _sqlite_order(node)
    return None


def _sqlite_order(node: exp.Expr) -> exp.Expr:
    value = exp.JSONExtract(this=node.this.copy(), expression=node.expression.copy())
    return fill(_SQLITE_ORDER, v=value, t=node.copy())


def json_min_max(node: exp.Max | exp.Min) -> exp.Expr | None:
    """max()/min() of json_extract(): the largest or smallest value in SQLite's order (see
    json_extract), where max() of the text took '3' over 100."""
    if not isinstance(node.this, exp.JSONExtractScalar) or node.expressions:
        return None
    order = " DESC" if isinstance(node, exp.Max) else ""
    return fill(
        f"(ARRAY_AGG(__t ORDER BY __t IS NULL, __k{order}))[1]",  # NULLs skipped
        t=node.this,
        k=_sqlite_order(node.this),
    )


# a JSON value as a key that orders as SQLite orders json_extract()'s values
_SQLITE_ORDER = (
    "ROW(CASE WHEN __v IS NULL OR JSON_TYPEOF(__v) = 'null' THEN 0 "
    "WHEN JSON_TYPEOF(__v) IN ('number', 'boolean') THEN 1 ELSE 2 END, "
    "CASE JSON_TYPEOF(__v) WHEN 'number' THEN CAST(__v #>> '{}' AS NUMERIC) "
    "WHEN 'boolean' THEN CAST(CAST(CAST(__v AS TEXT) AS BOOLEAN) AS INT) END, __t)"
)


def _total(node: exp.Anonymous) -> exp.Expr:
    arg = to_number(node.expressions[0])
    return typed(fill("CAST(COALESCE(SUM(__x), 0) AS DOUBLE PRECISION)", x=arg), "double precision")


def typeof(node: exp.Expr) -> exp.Expr | None:
    arg = node.this if not isinstance(node, exp.Anonymous) else node.expressions[0]
    name = {
        "integer": "integer",
        "boolean": "integer",
        "real": "real",
        "text": "text",
        "literal_text": "text",
        "uuid": "text",
        "json": "text",
        "timestamp": "text",
        "date": "text",
        "bytea": "blob",
    }.get(kind(arg))
    if name is None:
        return None  # numeric columns hold integers or reals per value: not decidable
    return typed(fill(f"CASE WHEN __x IS NULL THEN 'null' ELSE '{name}' END", x=arg), "text")


def _printf(node: exp.Anonymous) -> exp.Expr | None:
    """printf/format with %s, %d, %i, %f, %.Nf, %%, and widths on %d (zero or space padded)."""
    args = node.expressions
    if not args or not isinstance(args[0], exp.Literal):
        return None
    fmt = args[0].this
    values = list(args[1:])
    pieces: list[exp.Expr] = []
    pos = 0
    for m in re.finditer(r"%(0?)(\d*)(?:\.(\d+))?([sdifq%])", fmt):
        if m.start() > pos:
            pieces.append(exp.Literal.string(fmt[pos : m.start()]))
        pos = m.end()
        zero, width, prec, conv = m.groups()
        if conv == "%":
            pieces.append(exp.Literal.string("%"))
            continue
        if not values:
            return None
        v = values.pop(0)
        w = int(width or 0)
        if conv == "s":  # NULL prints as nothing
            piece = fill("COALESCE(__x, '')", x=to_text(v))
        elif conv in ("d", "i"):  # NULL prints as 0; zero padding goes after the sign
            n = fill("COALESCE(__x, 0)", x=to_integer(to_number(v) if kind(v) != "text" else v))
            if zero and w:
                piece = fill(
                    f"CASE WHEN __n < 0 THEN '-' || {_pad('CAST(-__n AS TEXT)', w - 1, '0')} "
                    f"ELSE {_pad('CAST(__n AS TEXT)', w, '0')} END",
                    n=n,
                )
                w = 0
            else:
                piece = fill("CAST(__n AS TEXT)", n=n)
        elif conv == "f":
            piece = fill(
                f"CAST(ROUND(CAST(COALESCE(__x, 0) AS NUMERIC), {int(prec or 6)}) AS TEXT)",
                x=to_number(v),
            )
        else:
            return None
        if w:
            piece = fill(_pad("__x", w, "0" if zero else " "), x=piece)
        pieces.append(piece)
    if pos < len(fmt):
        pieces.append(exp.Literal.string(fmt[pos:]))
    if "%" in re.sub(r"%(0?)(\d*)(?:\.(\d+))?([sdifq%])", "", fmt):
        return None  # a conversion not handled here
    if not pieces:
        return exp.Literal.string("")
    out = pieces[0]
    for p in pieces[1:]:
        out = exp.DPipe(this=out, expression=p)
    return typed(out, "text")


def _pad(sql: str, width: int, pad: str) -> str:
    """printf's minimum width: pad on the left, never cut (LPAD alone would cut)."""
    return f"CASE WHEN LENGTH({sql}) >= {width} THEN {sql} ELSE LPAD({sql}, {width}, '{pad}') END"


def strpos(node: exp.StrPosition) -> exp.Expr | None:
    node.set("this", to_text(node.this))
    return None


def substr(node: exp.Substring) -> exp.Expr | None:
    """substr(x, -n[, len]) counts from the end in SQLite."""
    node.set("this", to_text(node.this))
    start = node.args.get("start")
    if isinstance(start, exp.Neg) and isinstance(start.this, exp.Literal):
        n = int(start.this.this)
        length = node.args.get("length")
        if length is None:
            return typed(fill(f"RIGHT(__x, {n})", x=node.this), "text")
        if _non_negative(length):
            return typed(  # PostgreSQL counts positions before the first one, as SQLite does
                fill(f"SUBSTRING(__x FROM LENGTH(__x) - {n} + 1 FOR __n)", x=node.this, n=length),
                "text",
            )
    length = node.args.get("length")
    if _literal_int(start) and (length is None or _non_negative(length)):
        return typed(node, "text")  # PostgreSQL's SUBSTRING answers as SQLite here
    if start is None:
        return typed(node, "text")
    return _substr_general(
        node.this, to_integer(start), to_integer(length) if length is not None else None
    )


def _literal_int(node: exp.Expr | None) -> bool:
    if isinstance(node, exp.Neg):
        node = node.this
    return isinstance(node, exp.Literal) and node.is_int


def _non_negative(node: exp.Expr | None) -> bool:
    return isinstance(node, exp.Literal) and node.is_int


# SQLite's substrFunc, for a start or length known only when the row is read: p1 the 0-based
# start and p2 the count after a negative start (from the end) and a zero start (one fewer);
# a negative length takes the characters before p1 (PostgreSQL raises "negative substring
# length not allowed"), a start past the front counts from the end.
_P1 = "CASE WHEN __y < 0 THEN GREATEST(__y + LENGTH(__x), 0) WHEN __y > 0 THEN __y - 1 ELSE 0 END"
_P2 = (
    "CASE WHEN __y < 0 AND __y + LENGTH(__x) < 0 THEN GREATEST(ABS(__z) + __y + LENGTH(__x), 0) "
    "WHEN __y = 0 AND ABS(__z) > 0 THEN ABS(__z) - 1 ELSE ABS(__z) END"
)


def _substr_general(x: exp.Expr, y: exp.Expr, z: exp.Expr | None) -> exp.Expr:
    if z is None:
        return typed(fill(f"SUBSTRING(__x FROM CAST(({_P1}) + 1 AS INT))", x=x, y=y), "text")
    sql = (
        f"CASE WHEN __z < 0 THEN SUBSTRING(__x FROM CAST(GREATEST(({_P1}) - ({_P2}), 0) + 1 "
        f"AS INT) FOR CAST(LEAST({_P2}, {_P1}) AS INT)) "
        f"ELSE SUBSTRING(__x FROM CAST(({_P1}) + 1 AS INT) FOR CAST({_P2} AS INT)) END"
    )
    return typed(fill(sql, x=x, y=y, z=z), "text")


def round_(node: exp.Round) -> exp.Expr | None:
    """SQLite rounds halves away from zero and returns a real; PostgreSQL's round of a double
    rounds halves to even."""
    if kind(node.this) != "real":
        return None
    digits = node.args.get("decimals") or exp.Literal.number(0)
    return typed(
        fill(
            # doubles from 1e15 up are whole already (and numeric keeps only 15 digits)
            "CASE WHEN ABS(__x) >= 1e15 THEN __x "
            "ELSE CAST(ROUND(CAST(__x AS NUMERIC), __d) AS DOUBLE PRECISION) END",
            x=node.this,
            d=digits,
        ),
        "double precision",
    )


def length(node: exp.Length) -> exp.Expr | None:
    if kind(node.this) != "bytea":
        node.set("this", to_text(node.this))
    return None


def unicode_(node: exp.Unicode) -> exp.Expr | None:
    """unicode(x): the first character's code point, NULL for '' (PostgreSQL's ascii('')
    is 0; its text holds no NUL, so 0 means ''); numbers by their text. A blob is left to
    PostgreSQL to refuse (SQLite reads its bytes as UTF-8)."""
    if kind(node.this) == "bytea":
        return None
    return typed(fill("NULLIF(ASCII(__x), 0)", x=to_text(node.this)), "bigint")


def hex_(node: exp.Expr) -> exp.Expr | None:
    """hex(x): the upper-case hex of x's bytes (text as UTF-8, numbers as their text); ''
    for NULL, as in SQLite."""
    x = node.this
    data = x if kind(x) == "bytea" else fill("CONVERT_TO(__x, 'UTF8')", x=to_text(x))
    case = "LOWER" if isinstance(node, exp.LowerHex) else "UPPER"  # lower(hex(x)) is one node
    return typed(fill(f"COALESCE({case}(ENCODE(__d, 'hex')), '')", d=data), "text")


_QUOTE = {
    "bytea": "CASE WHEN __x IS NULL THEN 'NULL' "
    "ELSE 'X''' || UPPER(ENCODE(__x, 'hex')) || '''' END",
    "integer": "COALESCE(CAST(__x AS TEXT), 'NULL')",
    "text": "COALESCE('''' || REPLACE(__x, '''', '''''') || '''', 'NULL')",
    "literal_text": "COALESCE('''' || REPLACE(__x, '''', '''''') || '''', 'NULL')",
}


def _quote(node: exp.Anonymous) -> exp.Expr | None:
    """quote(x): x as an SQL literal: text quoted (quotes doubled), integers as digits, blobs
    as X'..', NULL as the word NULL. Reals (SQLite's %!.15g) are not translated."""
    if len(node.expressions) != 1 or kind(node.expressions[0]) not in _QUOTE:
        return None
    x = node.expressions[0]
    return typed(fill(_QUOTE[kind(x)], x=x), "text")


def json_object(node: exp.Expr) -> exp.Expr | None:
    """json_object(k, v, ...) and json_array(...): PostgreSQL 15 has no SQL/JSON
    constructors (sqlglot writes JSON_OBJECT('k': v)); json_build_object/_array build the same
    document (PostgreSQL prints it with spaces after ':' and ',')."""
    if isinstance(node, exp.JSONObject):
        args: list[exp.Expr] = []
        for kv in node.expressions:
            if not isinstance(kv, exp.JSONKeyValue):
                return None
            args += [kv.this, kv.expression]
        return typed(exp.Anonymous(this="JSON_BUILD_OBJECT", expressions=args), "json")
    return typed(exp.Anonymous(this="JSON_BUILD_ARRAY", expressions=list(node.expressions)), "json")


def _json_valid(node: exp.Anonymous) -> exp.Expr | None:
    """json_valid(x): NULL for NULL; a jsonb column is valid by construction. On text,
    PostgreSQL 15 has no test that returns false, so a cast that raises stands in for it:
    right for CHECK constraints (what the function is used for), an error elsewhere."""
    if len(node.expressions) != 1:
        return None
    arg = node.expressions[0]
    if kind(arg) == "json":
        return typed(fill("CASE WHEN __x IS NULL THEN NULL ELSE TRUE END", x=arg), "boolean")
    return typed(
        fill("CASE WHEN __x IS NULL THEN NULL ELSE CAST(__x AS JSONB) IS NOT NULL END", x=arg),
        "boolean",
    )


ANONYMOUS: dict[str, Callable[[exp.Anonymous], exp.Expr | None]] = {
    "total": _total,
    "json_array": json_object,
    "quote": _quote,
    "json_valid": _json_valid,
    "typeof": typeof,
    "printf": _printf,
    "format": _printf,
    "date": dates.date_function,
    "datetime": dates.date_function,
    "time": dates.date_function,
    "julianday": dates.date_function,
    "unixepoch": dates.date_function,
    "strftime": dates.date_function,
}
