"""SQLite's implicit conversions as PostgreSQL expressions, and the template helper the
rules build replacements with."""

from __future__ import annotations

import re
from functools import cache

import sqlglot
from sqlglot import exp

from emrops.migrate.sql.types import kind


@cache
def _template(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="postgres")


def fill(sql: str, **args: exp.Expr) -> exp.Expr:
    """A PostgreSQL expression from a template whose columns ``__name`` are the arguments."""
    tree = _template(sql).copy()
    for col in list(tree.find_all(exp.Column)):
        name = col.name
        if name.startswith("__") and not col.table:
            col.replace(_operand(args[name[2:]].copy()))
    if isinstance(tree, exp.Binary | exp.Unary | exp.AtTimeZone):
        tree = exp.Paren(this=tree)  # keeps its meaning wherever it is put
    return tree


def _operand(node: exp.Expr) -> exp.Expr:
    if isinstance(node, exp.Binary | exp.Unary | exp.AtTimeZone) and not isinstance(
        node, exp.Paren
    ):
        typed = node.type
        node = exp.Paren(this=node)
        node.type = typed
    return node


# a timestamp's text as Python (Django, the sqlite3 adapter) writes it: the fraction of a
# second, when there is one, as 6 digits (without it '...:59.5' was cut to '...:59')
TEXT_OF_TIMESTAMPTZ = (
    "TO_CHAR(__x AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || "
    "CASE WHEN DATE_TRUNC('second', __x AT TIME ZONE 'UTC') = __x AT TIME ZONE 'UTC' "
    "THEN '' ELSE TO_CHAR(__x AT TIME ZONE 'UTC', '.US') END"
)

# SQLite's text -> number coercion: the longest numeric prefix, else 0 (NULL stays NULL)
NUMERIC_PREFIX = r"^\s*([-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?)"


def to_number(node: exp.Expr) -> exp.Expr:
    """``node`` as SQLite sees it in arithmetic: numbers unchanged, text coerced."""
    if isinstance(node, exp.Literal) and node.is_string:
        m = re.match(NUMERIC_PREFIX, node.this)
        return exp.Literal.number(m.group(1) if m else 0)
    k = kind(node)
    if k in ("integer", "real", "numeric"):
        return node
    if k == "boolean":
        return typed(fill("CAST(__x AS INT)", x=node), "int")
    if k in ("text", "unknown"):
        return typed(
            fill(
                "CASE WHEN __x IS NULL THEN NULL ELSE COALESCE(CAST(SUBSTRING(CAST(__x AS TEXT) "
                f"FROM '{NUMERIC_PREFIX}') AS NUMERIC), 0) END",
                x=node,
            ),
            "numeric",
        )
    return node


def to_text(node: exp.Expr) -> exp.Expr:
    """``node`` as SQLite's text: numbers and booleans printed, text unchanged."""
    k = kind(node)
    if k in ("text", "literal_text"):
        return node
    if isinstance(node, exp.Literal):
        return exp.Literal.string(node.this)
    if k == "boolean":
        return typed(fill("CAST(CAST(__x AS INT) AS TEXT)", x=node), "text")
    if k == "timestamp":
        return typed(fill(TEXT_OF_TIMESTAMPTZ, x=node), "text")
    if k == "real":  # SQLite prints doubles with 15 significant digits, whole ones as 2.0
        return typed(fill(REAL_TEXT, x=node), "text")
    if k == "json":
        from emrops.migrate.sql.catalog import TranslationError  # (catalog imports this)

        # the column's text is gone: jsonb prints '{"a":1}' as '{"a": 1}' and sorts keys,
        # so data LIKE '%"kind":"click"%' matched nothing, length() and substr() differed
        raise TranslationError(
            "reads a jsonb column as text (LIKE, length(), substr(), ||): PostgreSQL prints "
            'jsonb normalized, not as SQLite stored it; a cast rule type = "text" for the '
            "column keeps its text"
        )
    return typed(exp.cast(node, "text"), "text")


REAL_TEXT = (
    "CASE WHEN __x = TRUNC(__x) AND ABS(__x) < 1e15 THEN CAST(CAST(__x AS BIGINT) AS TEXT) || '.0' "
    "WHEN ABS(__x) >= 1e-4 AND ABS(__x) < 1e15 THEN CAST(CAST(__x AS NUMERIC) AS TEXT) "
    "ELSE CAST(__x AS TEXT) END"
)


def to_integer(node: exp.Expr) -> exp.Expr:
    """``CAST(node AS INTEGER)`` as SQLite computes it: reals truncated toward zero, text by
    its leading integer (``' -3.5e1x'`` is -3), anything else 0."""
    k = kind(node)
    if k in ("integer", "boolean"):
        return typed(exp.cast(node, "bigint"), "bigint")
    if k in ("real", "numeric"):
        return typed(fill("CAST(TRUNC(__x) AS BIGINT)", x=node), "bigint")
    if isinstance(node, exp.Literal) and node.is_string:
        m = re.match(INTEGER_PREFIX, node.this)
        return exp.Literal.number(m.group(1) if m else 0)
    return typed(
        fill(
            "CASE WHEN __x IS NULL THEN NULL ELSE COALESCE(CAST(SUBSTRING(CAST(__x AS TEXT) "
            f"FROM '{INTEGER_PREFIX}') AS BIGINT), 0) END",
            x=node,
        ),
        "bigint",
    )


INTEGER_PREFIX = r"^\s*([-+]?\d+)"


def typed(node: exp.Expr, type_: str) -> exp.Expr:
    node.type = exp.DataType.build(type_, dialect="postgres")
    return node


# a timestamp text naming its own offset ('Z', '+02:00', '+0200', '+02')
_OFFSET = r"([zZ]|[+-]\d\d(:?\d\d)?)$"


def to_column(node: exp.Expr, pg_type: str) -> exp.Expr:
    """A value written to a column of ``pg_type`` (a trigger's INSERT VALUES or UPDATE SET).
    SQLite stores any value in any column; PostgreSQL assigns only what casts implicitly
    ("column "flag" is of type boolean but expression is of type integer", raised when the
    trigger first fires). So the value is converted as the copy converts stored values:
    numbers to booleans by 0/1, text to timestamps as UTC unless it names its offset, text
    to dates, times, jsonb and uuid, booleans to the 0/1 SQLite stores, timestamps to
    text as a UTC 'YYYY-MM-DD HH:MM:SS[.ffffff]'."""
    k = kind(node)
    t = pg_type.split("(")[0].strip().lower()
    literal = isinstance(node, exp.Literal)
    if isinstance(node, exp.Null) or k == "unknown":
        return node
    if t == "boolean":
        if literal and not node.is_string and node.this in ("0", "1"):
            return exp.Boolean(this=node.this == "1")
        if k in ("integer", "real", "numeric"):
            return typed(fill("__x <> 0", x=node), "boolean")
        if k == "text":
            return typed(fill("CAST(__x AS BOOLEAN)", x=node), "boolean")
    elif t in ("bigint", "integer", "smallint", "double precision", "numeric", "real"):
        if k == "boolean":
            return typed(fill(f"CAST(CAST(__x AS INT) AS {pg_type})", x=node), t)
        if k == "text":
            return typed(fill(f"CAST(__x AS {pg_type})", x=node), t)
    elif t == "timestamptz" and k in ("text", "literal_text"):
        if literal:
            zone = re.search(_OFFSET, node.this.strip()) is not None
            sql = (
                "CAST(__x AS TIMESTAMPTZ)" if zone else "CAST(__x AS TIMESTAMP) AT TIME ZONE 'UTC'"
            )
            return typed(fill(sql, x=node), "timestamptz")
        return typed(
            fill(
                f"CASE WHEN __x ~ '{_OFFSET}' THEN CAST(__x AS TIMESTAMPTZ) "
                "ELSE CAST(__x AS TIMESTAMP) AT TIME ZONE 'UTC' END",
                x=node,
            ),
            "timestamptz",
        )
    elif t in ("date", "time", "jsonb", "uuid") and k == "text":
        return typed(fill(f"CAST(__x AS {t.upper()})", x=node), t)
    elif t in ("text", "citext", "varchar", "character varying") and k in (
        "boolean",
        "real",
        "timestamp",  # else PostgreSQL's text of it, in the session's zone: '... 09:00:00+01'
    ):
        return to_text(node)
    return node
