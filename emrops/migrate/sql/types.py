"""What a PostgreSQL type is, in the terms SQLite's affinity rules use."""

from __future__ import annotations

from sqlglot import exp

T = exp.DataType.Type

TEXT = {T.TEXT, T.VARCHAR, T.CHAR, T.NVARCHAR, T.NCHAR, T.NAME}
INTEGER = {T.BIGINT, T.INT, T.SMALLINT, T.TINYINT, T.UBIGINT, T.UINT}
REAL = {T.DOUBLE, T.FLOAT}
NUMERIC = INTEGER | REAL | {T.DECIMAL}
TIMESTAMP = {T.TIMESTAMPTZ, T.TIMESTAMP, T.TIMESTAMPLTZ, T.DATE, T.DATETIME}
JSON = {T.JSON, T.JSONB}


def kind(node: exp.Expr) -> str:
    """text, integer, real, numeric, boolean, timestamp, date, json, bytea, uuid or unknown."""
    if isinstance(node, exp.Literal):
        if node.is_string:
            return "literal_text"
        return "integer" if node.is_int else "real"
    if isinstance(node, exp.Boolean):
        return "boolean"
    t = getattr(node, "type", None)
    if t is None:
        return "unknown"
    this = t.this
    if this in TEXT:
        return "text"
    if this in INTEGER:
        return "integer"
    if this in REAL:
        return "real"
    if this == T.DECIMAL:
        return "numeric"
    if this == T.BOOLEAN:
        return "boolean"
    if this == T.DATE:
        return "date"
    if this in TIMESTAMP:
        return "timestamp"
    if this in JSON:
        return "json"
    if this in (T.VARBINARY, T.BINARY, T.BLOB):
        return "bytea"
    if this == T.UUID:
        return "uuid"
    return "unknown"


def is_number(node: exp.Expr) -> bool:
    return kind(node) in ("integer", "real", "numeric")
