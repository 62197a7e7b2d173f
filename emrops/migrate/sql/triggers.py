"""SQLite triggers as PL/pgSQL trigger functions plus ``CREATE TRIGGER``.

Shapes translated (each a row of ``SHAPES`` tried in order):

* touch a timestamp (or set any column of the same row): ``AFTER INSERT|UPDATE ... BEGIN
  UPDATE t SET col = <value> WHERE rowid = NEW.rowid; END`` (or the primary key) on the
  trigger's own table becomes a BEFORE trigger setting ``NEW.col`` (no second UPDATE, no
  recursion);
* any body of UPDATE, INSERT (``OR IGNORE`` as ``ON CONFLICT DO NOTHING``), DELETE and
  ``SELECT RAISE(...)`` statements (INSERT with VALUES or a SELECT): audit/history rows,
  counters, cascades, checks;
* ``WHEN`` clauses and ``UPDATE OF col, ...`` as PostgreSQL's own. A body that writes its own
  table fires only for statements not made by a trigger (``pg_trigger_depth() = 0``): SQLite
  does not fire a trigger for its own writes (recursive triggers are off by default).

``RAISE(ABORT|FAIL|ROLLBACK, msg)`` raises an exception (PostgreSQL then rolls the whole
statement back: FAIL's partial effects and ROLLBACK's end of the transaction are not
reproduced); ``RAISE(IGNORE)`` skips the row in a BEFORE trigger (``RETURN NULL``).
Anything else raises ``TranslationError`` with the reason; the plan reports it with its SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from emrops.migrate.reflect import quote, tokens, unquote
from emrops.migrate.sql.catalog import Catalog, TranslationError, guarded
from emrops.migrate.sql.defaults import translate_default


@dataclass
class Header:
    name: str
    timing: str  # BEFORE, AFTER, INSTEAD OF
    event: str  # INSERT, UPDATE, DELETE
    of: list[str]  # UPDATE OF columns
    table: str
    when: str | None
    body: list[str]  # statements, without their semicolons


@guarded
def parse(sql: str) -> Header:
    """Split a CREATE TRIGGER statement into its parts (tokens, so literals are safe)."""
    toks = tokens(sql)
    words = [t[2] for t in toks]
    up = [w.upper() for w in words]
    i = up.index("TRIGGER") + 1
    if up[i : i + 3] == ["IF", "NOT", "EXISTS"]:
        i += 3
    name = unquote(words[i])
    i += 1
    if i + 1 < len(up) and words[i] == ".":  # schema-qualified
        name = unquote(words[i + 1])
        i += 2
    timing = "BEFORE"
    if up[i] in ("BEFORE", "AFTER"):
        timing = up[i]
        i += 1
    elif up[i : i + 2] == ["INSTEAD", "OF"]:
        timing = "INSTEAD OF"
        i += 2
    event = up[i]
    i += 1
    of: list[str] = []
    if event == "UPDATE" and up[i] == "OF":
        i += 1
        while up[i] != "ON":
            if words[i] != ",":
                of.append(unquote(words[i]))
            i += 1
    if up[i] != "ON":
        raise TranslationError("cannot read the trigger header")
    table = unquote(words[i + 1])
    i += 2
    if up[i : i + 3] == ["FOR", "EACH", "ROW"]:
        i += 3
    when = None
    begin = up.index("BEGIN", i)
    if up[i] == "WHEN":
        when = sql[toks[i][1] : toks[begin][0]].strip()
    end = max(j for j, w in enumerate(up) if w == "END")
    body: list[str] = []
    start = toks[begin][1]
    depth = 0
    case_depth = 0
    for j in range(begin + 1, end):
        w = up[j]
        if w == "(":
            depth += 1
        elif w == ")":
            depth -= 1
        elif w == "CASE":
            case_depth += 1
        elif w == "END":
            case_depth -= 1
        elif w == ";" and depth == 0 and case_depth == 0:
            body.append(sql[start : toks[j][0]].strip())
            start = toks[j][1]
    rest = sql[start : toks[end][0]].strip()
    if rest:
        body.append(rest)
    return Header(name, timing, event, of, table, when, [b for b in body if b])


_NOW = re.compile(
    r"^\(*\s*(CURRENT_TIMESTAMP|CURRENT_DATE|CURRENT_TIME|"
    r"(?:datetime|date|strftime|julianday|unixepoch)\s*\(.*'now'.*\))\s*\)*$",
    re.I | re.S,
)


@dataclass
class Translated:
    function_sql: str
    trigger_sql: str
    shape: str
    probes: list[str] = field(default_factory=list)  # see probes()


_ROW_REF = re.compile(r'"(new|old)"\."((?:[^"]|"")+)"')


def probes(catalog: Catalog, table: str, body: list[str]) -> list[str]:
    """``EXPLAIN`` of each INSERT, UPDATE and DELETE of a body, NEW's and OLD's columns
    standing as typed NULLs. PL/pgSQL plans a statement only when it first runs, so a type
    PostgreSQL refuses in one ("operator does not exist", "column ... is of type boolean but
    expression is of type integer") passed CREATE FUNCTION and failed the app's first write;
    EXPLAIN analyses it (types, columns, functions) without running it."""
    types = {name: pg_type for name, pg_type in catalog.columns_of(table)}

    def typed_null(m: re.Match[str]) -> str:
        name = m.group(2).replace('""', '"')
        pg_type = types.get(name)
        return f"CAST(NULL AS {pg_type})" if pg_type else m.group(0)

    out = []
    for stmt in body:
        if re.match(r"(INSERT|UPDATE|DELETE)\b", stmt):
            probe = stmt.rstrip(";")
        elif stmt.startswith("IF ") and _THEN_RAISE in stmt:
            # the condition of a RAISE (see _statement): a boolean PostgreSQL must compute
            probe = f"SELECT 1 WHERE {stmt[3 : stmt.index(_THEN_RAISE)]}"
        else:
            continue
        out.append("EXPLAIN " + _ROW_REF.sub(typed_null, probe))
    return out


_THEN_RAISE = " THEN RAISE EXCEPTION '%', "


@guarded
def translate(catalog: Catalog, sql: str, target: str, function: str) -> Translated:
    """The trigger ``sql`` as a function named ``function`` and a trigger named ``target``."""
    h = parse(sql)
    if h.timing == "INSTEAD OF":
        raise TranslationError("INSTEAD OF triggers (on views) are not translated")
    if h.table.lower() not in catalog.relations:
        raise TranslationError(f"its table {h.table} is not migrated")
    shape = "statements"
    body = _touch(catalog, h)
    timing = h.timing
    guard = ""
    if body is not None:
        shape, timing = "touch", "BEFORE"
    else:
        body = [_statement(catalog, h, s) for s in h.body]
        if _writes_own_table(h):
            # SQLite does not fire a trigger for the writes of its own body (recursive
            # triggers are off by default); PostgreSQL would, without end
            guard = "pg_trigger_depth() = 0"
    # a BEFORE trigger hands the row on; an AFTER trigger's result is ignored
    ret = ("OLD" if h.event == "DELETE" else "NEW") if timing == "BEFORE" else "NULL"
    lines = "\n".join("    " + b for b in body)
    fn = (
        # never OR REPLACE: a function of that name that is not ours fails the object
        f"CREATE FUNCTION {quote(function)}() RETURNS trigger LANGUAGE plpgsql AS "
        f"$emrops$\nBEGIN\n{lines}\n    RETURN {ret};\nEND\n$emrops$"
    )
    event = h.event
    if h.of:
        cols = []
        for c in h.of:
            hit = catalog.column(h.table, c)
            if hit is None:
                raise TranslationError(f"UPDATE OF names unknown column {c}")
            cols.append(quote(hit[0]))
        event += " OF " + ", ".join(cols)
    conds = (
        [f"({catalog.expr(h.when, h.table, trigger=h.table, assign='condition')})"]
        if h.when
        else []
    )
    conds += [guard] if guard else []
    when = f" WHEN ({' AND '.join(conds)})" if conds else ""
    trig = (
        f"CREATE TRIGGER {quote(target)} {timing} {event} ON {quote(catalog.target(h.table))} "
        f"FOR EACH ROW{when} EXECUTE FUNCTION {quote(function)}()"
    )
    return Translated(fn, trig, shape, probes(catalog, h.table, body) if shape != "touch" else [])


def _touch(catalog: Catalog, h: Header) -> list[str] | None:
    """``UPDATE <own table> SET col = <now> WHERE rowid = NEW.rowid`` (or the key): the
    assignments, made to NEW in a BEFORE trigger, or None for another shape."""
    if h.event not in ("INSERT", "UPDATE") or len(h.body) != 1:
        return None
    try:
        stmt = sqlglot.parse_one(h.body[0], read="sqlite")
    except SqlglotError:
        return None
    if not isinstance(stmt, exp.Update) or stmt.this.name.lower() != h.table.lower():
        return None
    where = stmt.args.get("where")
    if where is None or not _same_row(where.this, catalog, h.table):
        return None
    out = []
    for assign in stmt.expressions:
        if not isinstance(assign, exp.EQ) or not isinstance(assign.this, exp.Column):
            return None
        hit = catalog.column(h.table, assign.this.name)
        if hit is None:
            return None
        value = assign.expression.sql(dialect="sqlite")
        pg_value, ok = translate_default(value, hit[1]) if _NOW.match(value) else (None, False)
        if not ok or pg_value is None:
            node = assign.expression.copy()
            for col in node.find_all(exp.Column):  # the row's own columns are NEW's here
                if not col.table and col.find_ancestor(exp.Select) is None:
                    col.set("table", exp.to_identifier("new"))
            pg_value = catalog.expr_tree(node, h.table, trigger=h.table, assign=hit[1])
        out.append(f"NEW.{quote(hit[0])} := {pg_value};")
    return out


def _writes_own_table(h: Header) -> bool:
    for sql in h.body:
        try:
            stmt = sqlglot.parse_one(sql, read="sqlite")
        except SqlglotError:
            continue
        target = stmt.this
        if isinstance(target, exp.Schema):
            target = target.this
        if (
            isinstance(stmt, exp.Update | exp.Insert | exp.Delete)
            and isinstance(target, exp.Table)
            and target.name.lower() == h.table.lower()
        ):
            return True
    return False


def _same_row(cond: exp.Expr, catalog: Catalog, table: str) -> bool:
    """``rowid = NEW.rowid`` or every primary-key column equal to NEW's."""
    pairs = []
    for eq in _conjuncts(cond):
        if not isinstance(eq, exp.EQ):
            return False
        left, right = eq.this, eq.expression
        if isinstance(left, exp.Column) and left.table.lower() == "new":
            left, right = right, left
        if not (
            isinstance(left, exp.Column)
            and isinstance(right, exp.Column)
            and right.table.lower() == "new"
            and left.name.lower() == right.name.lower()
            and left.table.lower() in ("", table.lower())
        ):
            return False
        pairs.append(left.name.lower())
    if pairs in (["rowid"], ["oid"], ["_rowid_"]):
        return True
    rel = catalog.relations[table.lower()]
    return bool(pairs) and set(pairs) == set(rel.key)


def _conjuncts(cond: exp.Expr) -> list[exp.Expr]:
    if isinstance(cond, exp.And):
        return _conjuncts(cond.this) + _conjuncts(cond.expression)
    if isinstance(cond, exp.Paren):
        return _conjuncts(cond.this)
    return [cond]


_RAISE = re.compile(
    r"^SELECT\s+RAISE\s*\(\s*(ABORT|FAIL|ROLLBACK|IGNORE)\s*(?:,\s*('(?:[^']|'')*'))?\s*\)"
    r"(?:\s+(?:FROM\s+\S+\s+)?WHERE\s+(?P<where>.+))?$",
    re.I | re.S,
)
_CASE_RAISE = re.compile(
    r"^SELECT\s+CASE\s+WHEN\s+(?P<cond>.+?)\s+THEN\s+RAISE\s*\(\s*(ABORT|FAIL|ROLLBACK|IGNORE)"
    r"\s*(?:,\s*('(?:[^']|'')*'))?\s*\)\s+END$",
    re.I | re.S,
)


def _raise(kind: str, message: str | None, timing: str) -> str:
    if kind.upper() == "IGNORE":
        if timing != "BEFORE":
            raise TranslationError("RAISE(IGNORE) outside a BEFORE trigger")
        return "RETURN NULL;"
    msg = message or "''"
    return f"RAISE EXCEPTION '%', {msg} USING ERRCODE = 'raise_exception';"


def _statement(catalog: Catalog, h: Header, sql: str) -> str:
    """One statement of a trigger body as PL/pgSQL."""
    m = _RAISE.match(sql)
    if m:
        action = _raise(m.group(1), m.group(2), h.timing)
        if m.group("where"):
            cond = catalog.expr(m.group("where"), h.table, trigger=h.table, assign="condition")
            return f"IF {cond} THEN {action} END IF;"
        return action
    m = _CASE_RAISE.match(sql)
    if m:
        cond = catalog.expr(m.group("cond"), h.table, trigger=h.table, assign="condition")
        return f"IF {cond} THEN {_raise(m.group(2), m.group(3), h.timing)} END IF;"
    try:
        stmt = sqlglot.parse_one(sql, read="sqlite")
    except SqlglotError as exc:
        raise TranslationError(f"cannot parse {sql!r}: {exc}") from None
    if isinstance(stmt, exp.Update):
        return _update(catalog, h, stmt)
    if isinstance(stmt, exp.Insert):
        return _insert(catalog, h, stmt)
    if isinstance(stmt, exp.Delete):
        return _delete(catalog, h, stmt)
    raise TranslationError(f"statement not translated: {sql}")


def _table_of(catalog: Catalog, table: exp.Expr) -> str:
    if not isinstance(table, exp.Table) or table.name.lower() not in catalog.relations:
        raise TranslationError(f"writes to {table.sql()}, which is not a migrated table")
    if table.alias:
        raise TranslationError("an aliased target table")
    return table.name


def _update(catalog: Catalog, h: Header, stmt: exp.Update) -> str:
    table = _table_of(catalog, stmt.this)
    if stmt.args.get("from") or stmt.args.get("from_"):
        raise TranslationError("UPDATE ... FROM")
    sets = []
    for assign in stmt.expressions:
        if not isinstance(assign, exp.EQ) or not isinstance(assign.this, exp.Column):
            raise TranslationError("an UPDATE SET that is not column = value")
        hit = catalog.column(table, assign.this.name)
        if hit is None:
            raise TranslationError(f"unknown column {assign.this.name} of {table}")
        sets.append(f"{quote(hit[0])} = {_value(catalog, table, hit[1], assign.expression, h)}")
    sql = f"UPDATE {quote(catalog.target(table))} SET {', '.join(sets)}"
    where = stmt.args.get("where")
    if where is not None:
        sql += f" WHERE {catalog.expr_tree(where.this, table, h.table)}"
    return sql + ";"


def _insert(catalog: Catalog, h: Header, stmt: exp.Insert) -> str:
    schema = stmt.this
    table_node = schema.this if isinstance(schema, exp.Schema) else schema
    table = _table_of(catalog, table_node)
    names = [c.name for c in schema.expressions] if isinstance(schema, exp.Schema) else []
    if not names:
        names = list(catalog.relations[table.lower()].names)
    cols = []
    for n in names:
        hit = catalog.column(table, n)
        if hit is None:
            raise TranslationError(f"unknown column {n} of {table}")
        cols.append(quote(hit[0]))
    values = stmt.expression
    alternative = (stmt.args.get("alternative") or "").upper()
    if alternative and alternative != "IGNORE":
        raise TranslationError(f"INSERT OR {alternative}")
    conflict = " ON CONFLICT DO NOTHING" if alternative == "IGNORE" else ""
    target = f"INSERT INTO {quote(catalog.target(table))} ({', '.join(cols)})"
    if isinstance(values, exp.Select | exp.SetOperation):
        return f"{target} {catalog.query(values, trigger=h.table)}{conflict};"
    if not isinstance(values, exp.Values):
        raise TranslationError("an INSERT without VALUES or SELECT")
    types = [catalog.column(table, n) for n in names]
    rows = []
    for row in values.expressions:
        items = row.expressions if isinstance(row, exp.Tuple) else [row]
        if len(items) != len(names):
            raise TranslationError("an INSERT whose values do not match its columns")
        rows.append(
            "("
            + ", ".join(
                _value(catalog, table, t[1] if t else "text", v, h)
                for v, t in zip(items, types, strict=True)
            )
            + ")"
        )
    return f"{target} VALUES {', '.join(rows)}{conflict};"


def _value(catalog: Catalog, table: str, pg_type: str, node: exp.Expr, h: Header) -> str:
    """A value written to a column: "now" in the column's own type (a timestamptz gets the
    instant, not text read in the session's time zone), anything else translated."""
    text = node.sql(dialect="sqlite")
    if _NOW.match(text):
        pg, ok = translate_default(text, pg_type)
        if ok and pg is not None:
            return pg
    return catalog.expr_tree(node, table, h.table, assign=pg_type)


def _delete(catalog: Catalog, h: Header, stmt: exp.Delete) -> str:
    table = _table_of(catalog, stmt.this)
    sql = f"DELETE FROM {quote(catalog.target(table))}"
    where = stmt.args.get("where")
    if where is not None:
        sql += f" WHERE {catalog.expr_tree(where.this, table, h.table)}"
    return sql + ";"


def _translated_names() -> frozenset[str]:
    from emrops.migrate.sql.functions import ANONYMOUS

    return frozenset({*ANONYMOUS, "raise"})  # RAISE(...) is the trigger's own statement


_TRANSLATED = _translated_names()  # functions sqlglot does not know that rewrite.py translates


def unknown_calls(sql: str) -> list[str]:
    """Functions a trigger calls that sqlglot does not know (lower-cased), e.g. one only the
    SQLite application defines. PostgreSQL compiles a PL/pgSQL body without looking its calls
    up, so the trial and the build ask the target whether each exists
    (:func:`emrops.migrate.sql.missing_check`)."""
    try:
        h = parse(sql)
        parts = [*h.body, *([f"SELECT {h.when}"] if h.when else [])]
        names: list[str] = []
        for part in parts:
            for node in sqlglot.parse_one(part, read="sqlite").find_all(exp.Anonymous):
                name = str(node.name).lower()
                if name and name not in names and name not in _TRANSLATED:
                    names.append(name)
        return names
    except (SqlglotError, ValueError, IndexError):
        return []  # not parsed: the translation reports it
