"""Read the schema of any SQLite database: tables, columns, keys, constraints, indexes, views.

Everything comes from the PRAGMAs plus the ``CREATE`` statements in ``sqlite_master`` (the
only place that keeps CHECK clauses, partial-index WHERE clauses and expression indexes).
The connection is opened read-only by the caller; nothing here writes.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field

# emrops' own objects in a source (change capture) are never migrated
INTERNAL_PREFIXES = ("sqlite_", "_emrops_")


@dataclass
class Column:
    name: str
    declared: str  # declared type as written ('' when none)
    notnull: bool
    default: str | None  # the default expression's SQL text, as SQLite keeps it
    pk_pos: int  # 1-based position in the primary key, 0 when not part of it
    generated: bool = False
    collation: str = ""  # COLLATE of the column definition, upper-case ('' = BINARY)


@dataclass
class ForeignKey:
    columns: list[str]
    ref_table: str
    ref_columns: list[str]  # resolved to the referenced table's primary key when omitted
    on_delete: str
    on_update: str
    name: str | None = None  # CONSTRAINT name in the CREATE TABLE, when it has one
    sqlite_id: int | None = None  # its id in PRAGMA foreign_key_list (and foreign_key_check)
    deferral: str = ""  # "DEFERRABLE INITIALLY DEFERRED|IMMEDIATE", or "" (not deferrable)


@dataclass
class Index:
    name: str
    unique: bool
    elements: list[str]  # SQL of each element: a quoted column or an expression, with ASC/DESC
    columns: list[str]  # plain columns used (empty entries for expressions)
    where: str | None  # partial-index predicate
    origin: str  # c = CREATE INDEX, u = UNIQUE constraint, pk = PRIMARY KEY


@dataclass
class Check:
    name: str | None
    expr: str


@dataclass
class Table:
    name: str
    sql: str
    columns: list[Column]
    pk: list[str]
    without_rowid: bool
    autoincrement: bool
    rowid_alias: str | None  # the INTEGER PRIMARY KEY column aliasing rowid
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    indexes: list[Index] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    sequence: int | None = None  # sqlite_sequence value for AUTOINCREMENT tables

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


@dataclass
class View:
    name: str
    sql: str  # the full CREATE VIEW statement
    select: str  # the SELECT part


@dataclass
class Schema:
    tables: list[Table]
    views: list[View]
    skipped: list[str]  # objects that are not migrated (virtual tables, triggers), with why
    triggers: list[Trigger] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Trigger:
    name: str
    table: str
    sql: str  # the full CREATE TRIGGER statement


def declared_precision(declared: str) -> tuple[int, int] | None:
    """(precision, scale) of a declared ``NUMERIC(p[,s])`` or ``DECIMAL(p, s)``, else None
    (also for a precision PostgreSQL does not take: 1 to 1000)."""
    m = re.search(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", declared)
    if not m or not 1 <= int(m.group(1)) <= PG_MAX_NUMERIC:
        return None
    return int(m.group(1)), int(m.group(2) or 0)


PG_MAX_NUMERIC = 1000  # numeric(p, s): p at most 1000
PG_MAX_VARCHAR = 10485760  # varchar(n): n at most 10 MiB


def affinity(declared: str) -> str:
    """SQLite's column affinity rules (https://sqlite.org/datatype3.html §3.1), in order."""
    up = declared.upper()
    if "INT" in up:
        return "INTEGER"
    if "CHAR" in up or "CLOB" in up or "TEXT" in up:
        return "TEXT"
    if "BLOB" in up or not up.strip():
        return "BLOB"
    if "REAL" in up or "FLOA" in up or "DOUB" in up:
        return "REAL"
    return "NUMERIC"


def fold(name: str) -> str:
    """A name as SQLite compares names: only ASCII letters fold ("Ä" and "ä" are two names,
    which str.lower() would merge)."""
    return name.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def quote(name: str) -> str:
    """Double-quote an identifier (the SQL standard spelling both engines accept)."""
    return '"' + name.replace('"', '""') + '"'


_TOKEN = re.compile(
    r"""'(?:[^']|'')*'        # string literal
      | "(?:[^"]|"")*"        # quoted identifier
      | `(?:[^`]|``)*`        # MySQL-style identifier
      | \[[^\]]*\]            # MS-style identifier
      | --[^\n]*              # comment
      | /\*.*?\*/             # block comment
      | [A-Za-z_][A-Za-z0-9_$]*
      | \d+(?:\.\d*)?(?:[eE][+-]?\d+)? | \.\d+(?:[eE][+-]?\d+)?
      | \|\| | <= | >= | <> | != | == | << | >> | \S""",
    re.VERBOSE | re.DOTALL,
)


def tokens(sql: str) -> list[tuple[int, int, str]]:
    """SQL tokens as (start, end, text), comments dropped: enough to find clauses reliably."""
    out = []
    for m in _TOKEN.finditer(sql):
        text = m.group(0)
        if text.startswith("--") or text.startswith("/*"):
            continue
        out.append((m.start(), m.end(), text))
    return out


def unquote(token: str) -> str:
    if token[:1] == '"' and token[-1:] == '"':
        return token[1:-1].replace('""', '"')
    if token[:1] == "`" and token[-1:] == "`":
        return token[1:-1].replace("``", "`")
    if token[:1] == "[" and token[-1:] == "]":
        return token[1:-1]
    return token


def _matching(toks: list[tuple[int, int, str]], open_index: int) -> int:
    """Index of the ')' matching the '(' at ``open_index``."""
    depth = 0
    for i in range(open_index, len(toks)):
        if toks[i][2] == "(":
            depth += 1
        elif toks[i][2] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def parse_checks(sql: str) -> list[Check]:
    """Every CHECK clause of a CREATE TABLE statement (column and table constraints)."""
    toks = tokens(sql)
    checks: list[Check] = []
    for i, (_s, _e, text) in enumerate(toks):
        if text.upper() != "CHECK" or i + 1 >= len(toks) or toks[i + 1][2] != "(":
            continue
        close = _matching(toks, i + 1)
        expr = sql[toks[i + 1][1] : toks[close][0]].strip()
        name = None
        if i >= 2 and toks[i - 2][2].upper() == "CONSTRAINT":
            name = unquote(toks[i - 1][2])
        checks.append(Check(name, expr))
    return checks


def parse_fk_names(sql: str) -> dict[tuple[str, ...], str]:
    """Names of the named foreign keys of a CREATE TABLE statement, by their (lower-case)
    local columns: ``CONSTRAINT n FOREIGN KEY (a, b) REFERENCES ...`` and the column form
    ``a INTEGER CONSTRAINT n REFERENCES ...`` (PRAGMA foreign_key_list gives no names)."""
    names: dict[tuple[str, ...], str] = {}
    for definition in _definitions(sql):
        _fk_name(definition, names)
    return names


def parse_fk_deferral(sql: str) -> dict[tuple[str, ...], str]:
    """``DEFERRABLE INITIALLY DEFERRED`` or ``DEFERRABLE INITIALLY IMMEDIATE`` of each
    deferrable foreign key of a CREATE TABLE statement, by its (lower-case) local columns
    (PRAGMA foreign_key_list does not say). Django writes every foreign key ``DEFERRABLE
    INITIALLY DEFERRED``; an app inserting rows that refer to each other in one transaction
    relies on it."""
    found: dict[tuple[str, ...], str] = {}
    for words in _definitions(sql):
        upper = [w.upper() for w in words]
        if "REFERENCES" not in upper or "DEFERRABLE" not in upper:
            continue
        at = upper.index("DEFERRABLE")
        if at < upper.index("REFERENCES") or upper[at - 1] == "NOT":
            continue
        initially = upper[at + 1 : at + 3] == ["INITIALLY", "DEFERRED"]
        mode = "DEFERRABLE INITIALLY " + ("DEFERRED" if initially else "IMMEDIATE")
        cols = _fk_local_columns(words, upper)
        if cols:
            found[cols] = mode
    return found


_CONFLICT_KINDS = {"PRIMARY": "PRIMARY KEY", "UNIQUE": "UNIQUE", "NOT": "NOT NULL"}


def parse_conflict_clauses(sql: str) -> list[tuple[str, str, str]]:
    """SQLite's ``ON CONFLICT`` clauses of a CREATE TABLE statement other than the default
    ABORT, as (where: a column name or ``(a, b)``, constraint: PRIMARY KEY / UNIQUE /
    NOT NULL, resolution: REPLACE / IGNORE / FAIL / ROLLBACK). PostgreSQL has no table-level
    conflict clause: what they did in SQLite becomes an error there."""
    found: list[tuple[str, str, str]] = []
    for words in _definitions(sql):
        upper = [w.upper() for w in words]
        table_level = upper[0] in _TABLE_CONSTRAINTS
        for i in range(len(upper) - 2):
            if upper[i : i + 2] != ["ON", "CONFLICT"] or upper[i + 2] == "ABORT":
                continue
            kind = next(
                (_CONFLICT_KINDS[w] for w in reversed(upper[:i]) if w in _CONFLICT_KINDS), ""
            )
            if not kind:
                continue
            if table_level and "(" in words[:i]:
                start = words.index("(")
                inner = words[start + 1 : words.index(")", start)]
                where = "(" + ", ".join(unquote(w) for w in inner if w != ",") + ")"
            elif table_level:
                where = "(table)"
            else:
                where = unquote(words[0])
            found.append((where, kind, upper[i + 2]))
    return found


def _fk_local_columns(words: list[str], upper: list[str]) -> tuple[str, ...]:
    """The local columns of the foreign key in one definition: ``FOREIGN KEY (a, b)`` (after
    an optional CONSTRAINT name), or the column that a column-form REFERENCES belongs to."""
    at = 2 if upper[:1] == ["CONSTRAINT"] else 0
    if upper[at : at + 2] == ["FOREIGN", "KEY"] and words[at + 2 : at + 3] == ["("]:
        close = words.index(")", at + 3)
        return tuple(fold(unquote(w)) for w in words[at + 3 : close] if w != ",")
    if upper[:1] in (["FOREIGN"], ["CONSTRAINT"]):
        return ()
    return (fold(unquote(words[0])),)


def _definitions(sql: str) -> list[list[str]]:
    """The column and table-constraint definitions of a CREATE TABLE statement, each as its
    token texts (parenthesised parts kept whole)."""
    toks = tokens(sql)
    start = next((i for i, t in enumerate(toks) if t[2] == "("), None)
    if start is None:
        return []
    end = _matching(toks, start)
    found: list[list[str]] = []
    definition: list[str] = []
    i = start + 1
    while i <= end:
        text = toks[i][2]
        if text == "(":
            close = _matching(toks, i)
            definition += [t[2] for t in toks[i : close + 1]]
            i = close + 1
            continue
        if text in (",", ")") and definition:
            found.append(definition)
            definition = []
        elif text not in (",", ")"):
            definition.append(text)
        i += 1
    return found


_TABLE_CONSTRAINTS = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


def parse_collations(sql: str) -> dict[str, str]:
    """``COLLATE`` of each column definition of a CREATE TABLE statement, by lower-case
    column name (PRAGMA table_xinfo does not give it)."""
    toks = tokens(sql)
    start = next((i for i, t in enumerate(toks) if t[2] == "("), None)
    if start is None:
        return {}
    end = _matching(toks, start)
    found: dict[str, str] = {}
    words: list[str] = []
    depth = 0
    for _s, _e, text in toks[start + 1 : end + 1]:
        if text == "(":
            depth += 1
        elif text == ")" and depth:
            depth -= 1
        elif text in (",", ")") and depth == 0:
            upper = [w.upper() for w in words]
            if words and upper[0] not in _TABLE_CONSTRAINTS and "COLLATE" in upper[1:]:
                at = upper.index("COLLATE", 1)
                if at + 1 < len(words):
                    found[fold(unquote(words[0]))] = unquote(words[at + 1]).upper()
            words = []
            continue
        if depth == 0:
            words.append(text)
    return found


def _fk_name(words: list[str], names: dict[tuple[str, ...], str]) -> None:
    upper = [w.upper() for w in words]
    if "REFERENCES" not in upper:
        return
    ref = upper.index("REFERENCES")
    if upper[:1] == ["CONSTRAINT"] and upper[2:4] == ["FOREIGN", "KEY"] and words[4:5] == ["("]:
        close = words.index(")", 5)
        cols = [fold(unquote(w)) for w in words[5:close] if w != ","]
        names[tuple(cols)] = unquote(words[1])
    elif (
        upper[:1] not in (["FOREIGN"], ["CONSTRAINT"])
        and ref >= 2
        and upper[ref - 2] == ("CONSTRAINT")
    ):
        names[(fold(unquote(words[0])),)] = unquote(words[ref - 1])


def parse_index_sql(sql: str) -> tuple[list[str], str | None]:
    """The element list and the WHERE clause of a CREATE INDEX statement."""
    toks = tokens(sql)
    on = next(i for i, t in enumerate(toks) if t[2].upper() == "ON")
    open_i = next(i for i in range(on, len(toks)) if toks[i][2] == "(")
    close = _matching(toks, open_i)
    elements: list[str] = []
    depth, start = 0, toks[open_i][1]
    for i in range(open_i + 1, close):
        text = toks[i][2]
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif text == "," and depth == 0:
            elements.append(sql[start : toks[i][0]].strip())
            start = toks[i][1]
    elements.append(sql[start : toks[close][0]].strip())
    where = None
    for i in range(close + 1, len(toks)):
        if toks[i][2].upper() == "WHERE":
            where = sql[toks[i][1] :].strip().rstrip(";").strip()
            break
    return elements, where


def _view_select(sql: str) -> str:
    toks = tokens(sql)
    # CREATE [TEMP] VIEW [IF NOT EXISTS] name [(cols)] AS select
    depth = 0
    for _s, end, text in toks:
        if text == "(":
            depth += 1
        elif text == ")":
            depth -= 1
        elif text.upper() == "AS" and depth == 0:
            return sql[end:].strip().rstrip(";").strip()
    raise ValueError("no AS in CREATE VIEW")


def _tail_options(sql: str) -> set[str]:
    """Table options after the closing parenthesis (WITHOUT ROWID, STRICT)."""
    toks = tokens(sql)
    open_i = next(i for i, t in enumerate(toks) if t[2] == "(")
    close = _matching(toks, open_i)
    words = [t[2].upper() for t in toks[close + 1 :]]
    opts = set()
    if "WITHOUT" in words and "ROWID" in words:
        opts.add("WITHOUT ROWID")
    if "STRICT" in words:
        opts.add("STRICT")
    return opts


ROWID_NAMES = ("rowid", "_rowid_", "oid")  # the names SQLite reads a table's row id by


def rowid_name(table: Table) -> str | None:
    """The name that reads the row id of a rowid table in SQL: ``rowid``, or ``_rowid_`` /
    ``oid`` when a column that is not the row id took that name (``CREATE TABLE t(rowid
    TEXT, ...)`` is legal, and then ``rowid`` reads the column). None for a WITHOUT ROWID
    table, or when columns hide all three names (the rows then have no stable key)."""
    if table.without_rowid:
        return None
    taken = {fold(c.name) for c in table.columns if c.name != table.rowid_alias}
    if table.rowid_alias is None and table.pk == ["rowid"]:  # a full-text table's own rowid
        taken.discard("rowid")
    return next((n for n in ROWID_NAMES if n not in taken), None)


def reflect(conn: sqlite3.Connection) -> Schema:
    """The schema of the open database. Raises sqlite3.DatabaseError for a file that is not one."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY rowid"
    ).fetchall()
    has_seq = any(r[1] == "sqlite_sequence" for r in rows)
    # seq as SQLite's AUTOINCREMENT reads it, an integer: the table is an ordinary one that
    # tools and hand fixes write ('100' as text, 200.5, NULL, a second row for one name), and
    # text ended plan in "unexpected TypeError", a real in a setval() PostgreSQL refused
    sequences = (
        dict(
            conn.execute(
                "SELECT name, max(CAST(seq AS INTEGER)) FROM sqlite_sequence "
                "WHERE seq IS NOT NULL GROUP BY name"
            ).fetchall()
        )
        if has_seq
        else {}
    )
    tables: list[Table] = []
    views: list[View] = []
    skipped: list[str] = []
    triggers: list[Trigger] = []
    notes: list[str] = []
    virtual: set[str] = set()
    for kind, name, _tbl, sql in rows:
        if name.startswith(INTERNAL_PREFIXES):
            continue
        if kind == "table":
            if sql and re.match(r"\s*CREATE\s+VIRTUAL\s+TABLE", sql, re.I):
                virtual.add(name)
                if _full_text_with_content(sql):
                    tables.append(_full_text_table(conn, name, sql))
                    notes.append(
                        f"{name}: full-text ({_module(sql)}) table copied as a plain table "
                        "(its columns and rowid); MATCH queries need PostgreSQL full-text "
                        "search (to_tsvector, a GIN index)"
                    )
                    continue
                if _module(sql) in ("rtree", "rtree_i32"):
                    tables.append(_rtree_table(conn, name, sql))
                    notes.append(
                        f"{name}: R*Tree ({_module(sql)}) table copied as a plain table (its id, "
                        "bounds and auxiliary columns); spatial searches need a GiST index on "
                        "PostgreSQL (e.g. on box(point(minx, miny), point(maxx, maxy)))"
                    )
                    continue
                skipped.append(f"virtual table {name} (recreate it with a PostgreSQL equivalent)")
                continue
            tables.append(_table(conn, name, sql, sequences.get(name)))
        elif kind == "view":
            views.append(View(name, sql, _view_select(sql)))
        elif kind == "trigger":
            triggers.append(Trigger(name, _tbl, sql))
    # shadow tables of a virtual table (fts5 and friends) go with it
    tables = [
        t
        for t in tables
        if not any(t.name.startswith(v + "_") and t.name not in virtual for v in virtual)
    ]
    # SQLite finds a key's parent table as it finds any name, ASCII case folded
    # (REFERENCES USERS(ID) is the table "Users"): the key names the table as it is named, or
    # it was skipped as a key "to missing table USERS"
    by_fold = {fold(t.name): t.name for t in tables}
    for t in tables:
        for fk in t.foreign_keys:
            fk.ref_table = by_fold.get(fold(fk.ref_table), fk.ref_table)
    return Schema(tables, views, skipped, triggers, notes)


def _module(sql: str) -> str:
    m = re.search(r"\bUSING\s+(\w+)", sql, re.I)
    return m.group(1).lower() if m else ""


def _full_text_with_content(sql: str) -> bool:
    """An FTS3/4/5 table that holds its own text (not contentless, not external content)."""
    if _module(sql) not in ("fts3", "fts4", "fts5"):
        return False
    return not re.search(r"\bcontent\s*=", sql, re.I)


def _full_text_table(conn: sqlite3.Connection, name: str, sql: str) -> Table:
    """A full-text table as a plain table: its columns (text) and its rowid as a column, so
    rows keep pointing at what they index."""
    columns = [Column("rowid", "INTEGER", True, None, 1)]
    columns += [
        Column(r[1], "TEXT", False, None, 0)
        for r in _pragma(conn, "table_xinfo", name)
        if r[6] != 1
    ]
    return Table(name, sql, columns, ["rowid"], False, False, None)


def _rtree_table(conn: sqlite3.Connection, name: str, sql: str) -> Table:
    """An R*Tree table as a plain table: its first column is its rowid (an integer key), then
    the bounds (32-bit floats as SQLite returns them, or integers for rtree_i32) and the
    auxiliary (+name) columns, untyped."""
    info = _pragma(conn, "table_xinfo", name)
    key = info[0][1]
    columns = [Column(key, "INTEGER", True, None, 1)]
    columns += [Column(r[1], r[2] or "", False, None, 0) for r in info[1:]]
    return Table(name, sql, columns, [key], False, False, key)


def _pragma(conn: sqlite3.Connection, pragma: str, arg: str) -> list[tuple]:
    return conn.execute(f"PRAGMA {pragma}({quote(arg)})").fetchall()


def _table(conn: sqlite3.Connection, name: str, sql: str, seq: int | None) -> Table:
    columns = [
        Column(r[1], r[2] or "", bool(r[3]), r[4], int(r[5]), generated=r[6] in (2, 3))
        for r in _pragma(conn, "table_xinfo", name)
        if r[6] != 1
    ]
    for col, collation in _collations(sql, columns):
        col.collation = collation
    pk = [c.name for c in sorted((c for c in columns if c.pk_pos), key=lambda c: c.pk_pos)]
    opts = _tail_options(sql)
    without_rowid = "WITHOUT ROWID" in opts
    if "STRICT" in opts:
        # ANY in a STRICT table keeps each value as given (no affinity): an untyped column,
        # not the NUMERIC affinity the word has elsewhere
        for col in columns:
            if col.declared.upper() == "ANY":
                col.declared = ""
    rowid_alias = None
    if (
        not without_rowid
        and len(pk) == 1
        and columns_by(columns, pk[0]).declared.upper() == "INTEGER"
        # `id INTEGER PRIMARY KEY DESC` is not a rowid alias (a quirk SQLite keeps for
        # compatibility): it has an index of its own and can hold NULLs and duplicates of
        # other affinities. A true alias has no primary-key index.
        and not any(r[3] == "pk" for r in _pragma(conn, "index_list", name))
    ):
        rowid_alias = pk[0]
    autoincrement = bool(re.search(r"\bAUTOINCREMENT\b", sql, re.I))
    table = Table(name, sql, columns, pk, without_rowid, autoincrement, rowid_alias, sequence=seq)
    table.checks = parse_checks(sql)
    fk_names = parse_fk_names(sql)
    fk_deferral = parse_fk_deferral(sql)
    fks: dict[int, list[tuple]] = {}
    for r in _pragma(conn, "foreign_key_list", name):
        fks.setdefault(r[0], []).append(r)
    for parts in fks.values():
        parts.sort(key=lambda r: r[1])
        ref = parts[0][2]
        ref_cols = [r[4] for r in parts]
        if any(c is None for c in ref_cols):
            ref_pk = [
                r[1] for r in sorted(_pragma(conn, "table_info", ref), key=lambda r: r[5]) if r[5]
            ]
            ref_cols = ref_pk
        local = [r[3] for r in parts]
        table.foreign_keys.append(
            ForeignKey(
                local,
                ref,
                ref_cols,
                parts[0][6],
                parts[0][5],
                fk_names.get(tuple(fold(c) for c in local)),
                parts[0][0],
                fk_deferral.get(tuple(fold(c) for c in local), ""),
            )
        )
    index_sql = dict(
        conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND tbl_name=?", (name,)
        )
    )
    for r in _pragma(conn, "index_list", name):
        iname, unique, origin = r[1], bool(r[2]), r[3]
        info = [x for x in _pragma(conn, "index_xinfo", iname) if x[5]]
        columns_used = [x[2] or "" for x in info]
        if origin == "c" and index_sql.get(iname):
            elements, where = parse_index_sql(index_sql[iname])
        else:
            elements = [quote(x[2]) + (" DESC" if x[3] else "") for x in info]
            where = None
        table.indexes.append(Index(iname, unique, elements, columns_used, where, origin))
    table.indexes.reverse()  # index_list lists the newest first
    return table


def _collations(sql: str, columns: list[Column]) -> list[tuple[Column, str]]:
    try:
        found = parse_collations(sql)
    except (ValueError, StopIteration):
        return []
    return [(c, found[fold(c.name)]) for c in columns if fold(c.name) in found]


def columns_by(columns: list[Column], name: str) -> Column:
    return next(c for c in columns if c.name == name)
