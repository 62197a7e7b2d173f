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


TEXT_OF_TIMESTAMPTZ = "TO_CHAR(__x AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')"

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
    return typed(exp.cast(node, "text"), "text")


def typed(node: exp.Expr, type_: str) -> exp.Expr:
    node.type = exp.DataType.build(type_, dialect="postgres")
    return node
