"""Collations a SQLite schema names that only its application defines.

Apps register collations (``LOCALIZED``, ``UNICODE``...) on their own connections and declare
columns, keys and indexes with them. Anywhere else SQLite refuses every statement that touches
such a b-tree ("no such collation sequence"), even ``SELECT count(*)`` of a WITHOUT ROWID table
keyed on one. :func:`register_stand_ins` registers a byte-order stand-in under each unknown name,
for reads whose result does not depend on the order: counting rows, scanning them, reading by
rowid. (integrity_check is different: see :mod:`emrops.backup.integrity`.)
"""

from __future__ import annotations

import re
import sqlite3

BUILTIN = frozenset({"BINARY", "NOCASE", "RTRIM"})

# strings, comments and quoted identifiers are consumed whole, so a COLLATE inside them is not
# taken for one; group 1 is the name after a real COLLATE
_SCAN = re.compile(
    r"""'(?:[^']|'')*' | --[^\n]* | /\*.*?\*/ | "(?:[^"]|"")*" | `(?:[^`]|``)*` | \[[^\]]*\]
      | \bCOLLATE\s+("(?:[^"]|"")+"|`(?:[^`]|``)+`|\[[^\]]+\]|'(?:[^']|'')+'|[A-Za-z_][\w$]*)""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)


def _unquote(name: str) -> str:
    if name[:1] in "\"'`" and name[-1:] == name[:1]:
        return name[1:-1].replace(name[0] * 2, name[0])
    if name[:1] == "[" and name[-1:] == "]":
        return name[1:-1]
    return name


def collations_in(sql: str) -> list[str]:
    """The names after COLLATE in one statement (unquoted), builtins left out."""
    names: list[str] = []
    for m in _SCAN.finditer(sql):
        if m.group(1):
            name = _unquote(m.group(1))
            if name.upper() not in BUILTIN and name.upper() not in {n.upper() for n in names}:
                names.append(name)
    return names


def unknown_collations(conn: sqlite3.Connection) -> list[str]:
    """Collations the schema uses that this connection cannot compare with."""
    found: list[str] = []
    rows = conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql LIKE '%collate%'"  # ASCII case-blind, no copy
    ).fetchall()
    for (sql,) in rows:
        for name in collations_in(sql):
            if name.upper() not in {f.upper() for f in found}:
                found.append(name)
    return [n for n in found if not _defined(conn, n)]


def _defined(conn: sqlite3.Connection, name: str) -> bool:
    """Whether ``name`` compares on this connection (PRAGMA collation_list also lists names a
    parsed schema merely mentions)."""
    quoted = '"' + name.replace('"', '""') + '"'
    try:
        conn.execute(f"SELECT 'a' < 'b' COLLATE {quoted}").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such collation" in str(exc):
            return False
        raise
    return True


def byte_order(a: str, b: str) -> int:
    """A total order on text (its UTF-8 bytes): what every stand-in collation compares by."""
    x, y = a.encode("utf-8", "surrogatepass"), b.encode("utf-8", "surrogatepass")
    return (x > y) - (x < y)


def register_stand_ins(conn: sqlite3.Connection) -> list[str]:
    """Register a byte-order stand-in for each unknown collation; returns their names."""
    names = unknown_collations(conn)
    for name in names:
        conn.create_collation(name, byte_order)
    return names
