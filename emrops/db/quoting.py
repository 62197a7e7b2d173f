"""Identifiers in SQL text: always quoted, never pasted.

Table and column names come from the database being read, so they are data: a name holding
``"``, ``'``, ``]``, a backtick, a space, a keyword, a newline or ``%`` must name itself. Both
SQLite and PostgreSQL take an identifier in double quotes with inner double quotes doubled.
"""

from __future__ import annotations

from emrops.errors import DatabaseError


def quote_ident(name: str) -> str:
    """``name`` as an SQL identifier: in double quotes, inner quotes doubled."""
    if "\x00" in name:
        raise DatabaseError(f"an identifier cannot contain a NUL character: {name!r}")
    return '"' + name.replace('"', '""') + '"'


def pg_text(sql: str) -> str:
    """SQL text for ``exec_driver_sql`` without parameters on psycopg, which reads ``%`` as a
    placeholder: a quoted identifier holding ``%`` must reach the server as written."""
    return sql.replace("%", "%%")
