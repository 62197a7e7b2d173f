"""Plan what is built after the copy: primary keys, unique and CHECK constraints, indexes,
identities and foreign keys per table; views and triggers translated with the column types
known from the tables (emrops.migrate.sql); rows whose foreign key points nowhere."""

from __future__ import annotations

import sqlite3
from typing import Any

from emrops.migrate.plan import PostObject, TablePlan, TriggerPlan, ViewPlan, is_text
from emrops.migrate.reflect import Table, fold, quote
from emrops.migrate.sql import NOCASE_ELEMENT, Catalog, TranslationError, index_element


def plan_trigger(
    catalog: Catalog, trig: Any, scope: set[str], fn_scope: set[str], name_for: Any
) -> TriggerPlan:
    """A trigger as a PL/pgSQL function plus trigger, or the reason it is not translated."""
    table = catalog.relations.get(trig.table.lower())
    target = name_for("trigger", trig.name, scope)
    function = name_for("function", f"{trig.name}_fn", fn_scope)
    tp = TriggerPlan(trig.name, table.target if table else trig.table, target, function, trig.sql)
    try:
        done = catalog.trigger(trig.sql, target, function)
    except TranslationError as exc:
        tp.error = str(exc)
        return tp
    tp.function_sql, tp.trigger_sql, tp.shape = done.function_sql, done.trigger_sql, done.shape
    tp.probes = list(done.probes)
    from emrops.migrate.sql.triggers import unknown_calls  # loaded with the translation above

    tp.calls = unknown_calls(trig.sql)
    return tp


def _translated(fn: Any, fallback: Any) -> Any:
    """A translation, or the SQL as written when sqlglot cannot read it (PostgreSQL then
    reports the object, with its SQL, when it is built)."""
    try:
        return fn()
    except TranslationError:
        return fallback


def plan_view(
    conn: sqlite3.Connection,
    catalog: Catalog,
    view: Any,
    target: str,
    rules: dict[str, Any],
    name_for: Any,
) -> ViewPlan:
    """A view translated with the column types known from the tables (and earlier views)."""
    try:
        names = [r[1] for r in conn.execute(f"PRAGMA table_info({quote(view.name)})")]
    except sqlite3.Error:
        names = []  # a view SQLite itself cannot resolve any more
    scope: set[str] = set()
    columns = [(c, name_for("view column", c, scope)) for c in names]
    targets = [t for _c, t in columns]
    replacement = rules.get(view.name, {}).get("sql")
    if replacement is not None:
        catalog.add(view.name, target, [(c, t, "text") for c, t in columns])
        return ViewPlan(view.name, target, str(replacement), targets, "replaced by --cast")
    try:
        done = catalog.view(view.name, target, view.select, columns)
    except TranslationError as exc:
        catalog.add(view.name, target, [(c, t, "text") for c, t in columns])
        return ViewPlan(view.name, target, view.select, targets, f"not translated: {exc}")
    return ViewPlan(view.name, target, done.sql, targets)


def post_objects(
    table: Table,
    tp: TablePlan,
    cmap: dict[str, str],
    catalog: Catalog,
    scope: set[str],
    name_for: Any,
    notes: list[str],
) -> None:
    """Add to ``tp.post`` what is built after the copy: primary key, unique constraints,
    indexes, CHECKs (translated, or as written: the plan tries each on the target) and
    identities."""
    t = quote(tp.target)
    if table.pk:
        name = name_for("constraint", f"{tp.target}_pkey", scope)
        cols = ", ".join(quote(cmap[fold(c)]) for c in table.pk)
        tp.post.append(
            PostObject(
                "pk",
                tp.target,
                name,
                f"ALTER TABLE {t} ADD CONSTRAINT {quote(name)} PRIMARY KEY ({cols})",
            )
        )
    for idx in table.indexes:
        if idx.origin == "pk":
            continue
        if idx.origin == "u":
            ucols = [cmap[fold(c)] for c in idx.columns]
            name = name_for("constraint", f"{tp.target}_{'_'.join(ucols)}_key", scope)
            tp.post.append(
                PostObject(
                    "unique",
                    tp.target,
                    name,
                    f"ALTER TABLE {t} ADD CONSTRAINT {quote(name)} "
                    f"UNIQUE ({', '.join(map(quote, ucols))})",
                )
            )
            continue
        tp.post.append(_index(idx, table, tp, catalog, name_for("index", idx.name, scope), notes))
    for i, chk in enumerate(table.checks, start=1):
        name = name_for("constraint", chk.name or f"{tp.target}_check{i if i > 1 else ''}", scope)
        expr = _translated(
            lambda chk=chk: catalog.expr(chk.expr, table.name, assign="condition"), chk.expr
        )
        tp.post.append(
            PostObject(
                "check",
                tp.target,
                name,
                f"ALTER TABLE {t} ADD CONSTRAINT {quote(name)} CHECK ({expr})",
                source_expr=chk.expr,
            )
        )
    tp.post += [_identity(table, tp, c.target) for c in tp.columns if c.identity]
    tp.post += _rtrim_keys(table, tp, cmap, catalog, scope, name_for, notes)


def _rtrim_keys(
    table: Table,
    tp: TablePlan,
    cmap: dict[str, str],
    catalog: Catalog,
    scope: set[str],
    name_for: Any,
    notes: list[str],
) -> list[PostObject]:
    """A unique key over text SQLite compares under ``COLLATE RTRIM`` (the column's, or the
    index element's) kept 'a' and 'a ' apart as one value; PostgreSQL has no such collation,
    so beside the key as it is (which foreign keys may need) a unique index over rtrim()
    of those columns keeps SQLite's uniqueness."""
    texty = {c.source for c in tp.columns if is_text(c.pg_type) or c.pg_type == "citext"}
    own = {c.name: c.collation for c in table.columns}
    keys: list[tuple[str, list[str], list[str], str | None]] = []
    if table.pk and not table.rowid_alias:
        keys.append((f"{tp.target}_pkey", list(table.pk), [""] * len(table.pk), None))
    for idx in table.indexes:
        if idx.unique and idx.origin != "pk" and all(idx.columns):
            given = [_element_collation(e) for e in idx.elements]
            name = idx.name
            if idx.origin == "u":  # named as the UNIQUE constraint is
                name = f"{tp.target}_{'_'.join(cmap[fold(c)] for c in idx.columns)}_key"
            keys.append((name, list(idx.columns), given, idx.where))
    out = []
    for name, cols, given, where in keys:
        rtrim = [
            (g or own.get(c, "")) == "RTRIM" and c in texty
            for c, g in zip(cols, given, strict=False)
        ]
        if not any(rtrim):
            continue
        elements = [
            f"(rtrim({quote(cmap[fold(c)])}))" if r else quote(cmap[fold(c)])
            for c, r in zip(cols, rtrim, strict=True)
        ]
        target = name_for("index", f"{name}_rtrim", scope)
        sql = (
            f"CREATE UNIQUE INDEX IF NOT EXISTS {quote(target)} ON {quote(tp.target)} "
            f"({', '.join(elements)})"
        )
        if where:
            sql += " WHERE " + _translated(
                lambda w=where: catalog.expr(w, table.name, assign="condition"), where
            )
        out.append(PostObject("index", tp.target, target, sql))
        notes.append(
            f"{tp.source}: unique key {name} compares under COLLATE RTRIM: also indexed as "
            f"{target} over rtrim() (trailing spaces ignored, as in SQLite)"
        )
    return out


def _element_collation(element: str) -> str:
    m = NOCASE_ELEMENT.search(element)
    return m.group(1).strip('"').upper() if m else ""


def _index(
    idx: Any, table: Table, tp: TablePlan, catalog: Catalog, name: str, notes: list[str]
) -> PostObject:
    """CREATE INDEX, its expressions and WHERE translated (or sent as written)."""
    elements = []
    for e in idx.elements:
        sql, note = _translated(lambda e=e: index_element(e, catalog, table.name), (e, ""))
        elements.append(sql)
        if note:
            notes.append(f"index {idx.name}: {note}")
    sql = (
        f"CREATE {'UNIQUE ' if idx.unique else ''}INDEX IF NOT EXISTS {quote(name)} "
        f"ON {quote(tp.target)} ({', '.join(elements)})"
    )
    if idx.where:
        sql += " WHERE " + _translated(
            lambda w=idx.where: catalog.expr(w, table.name, assign="condition"), idx.where
        )
    return PostObject("index", tp.target, name, sql)


def _identity(table: Table, tp: TablePlan, column: str) -> PostObject:
    """The identity's sequence set past the largest key copied (and SQLite's own sequence):
    its last value is that key, so the next is one more; an empty table starts at 1. A key of
    2^63 - 1 leaves it exhausted (nextval fails, where SQLite picks a random unused rowid)
    instead of failing the run on "bigint out of range"."""
    t = quote(tp.target)
    seq = max(table.sequence or 0, 0)
    return PostObject(
        "identity",
        tp.target,
        column,
        f"SELECT setval(pg_get_serial_sequence('{t.replace(chr(39), chr(39) * 2)}', "
        f"'{column.replace(chr(39), chr(39) * 2)}'), GREATEST(v, 1), v > 0) FROM "
        f"(SELECT GREATEST(coalesce(max({quote(column)}), 0), {seq}) AS v FROM {t}) AS top",
    )


def foreign_keys(
    table: Table,
    tp: TablePlan,
    col_maps: dict[str, dict[str, str]],
    table_names: dict[str, str],
    scope: set[str],
    name_for: Any,
    notes: list[str],
    tables: dict[str, Table],
) -> list[PostObject]:
    """The foreign keys of one table, added NOT VALID then validated; a key to a missing table,
    naming no such column there, or to columns that are not the parent's primary key or a
    unique index (SQLite fails such a key with "foreign key mismatch" whenever it enforces it;
    PostgreSQL refuses to create it), is skipped with a note."""
    found: list[PostObject] = []
    for fk in table.foreign_keys:
        if fk.ref_table not in table_names:
            notes.append(f"{table.name}: foreign key to missing table {fk.ref_table} skipped")
            continue
        ref_map = col_maps[fk.ref_table]
        unknown = [c for c in fk.columns if fold(c) not in col_maps[table.name]] + [
            c for c in fk.ref_columns if fold(c) not in ref_map
        ]
        if unknown or not fk.ref_columns or len(fk.ref_columns) != len(fk.columns):
            # SQLite accepts REFERENCES to a column that does not exist (or to a table
            # without a primary key) and only fails when the key is enforced
            notes.append(
                f"{table.name}: foreign key ({', '.join(fk.columns)}) to {fk.ref_table}"
                f"({', '.join(fk.ref_columns)}) names no such key there; skipped"
            )
            continue
        if fk.ref_columns and not _unique_key(tables[fk.ref_table], fk.ref_columns):
            notes.append(
                f"{table.name}: foreign key ({', '.join(fk.columns)}) to {fk.ref_table}"
                f"({', '.join(fk.ref_columns)}) skipped: those columns are not its primary key "
                'or a unique index, so SQLite cannot enforce the key either ("foreign key '
                'mismatch"); add a unique index on them in SQLite first to keep it'
            )
            continue
        cols = [col_maps[table.name][fold(c)] for c in fk.columns]
        ref_cols = [ref_map[fold(c)] for c in fk.ref_columns]
        name = name_for("constraint", fk.name or f"{tp.target}_{'_'.join(cols)}_fkey", scope)
        actions = "".join(
            f" ON {verb} {action.upper()}"
            for verb, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update))
            if action and action.upper() != "NO ACTION"
        ) + (f" {fk.deferral}" if fk.deferral else "")
        found.append(
            PostObject(
                "fk",
                tp.target,
                name,
                f"ALTER TABLE {quote(tp.target)} ADD CONSTRAINT {quote(name)} FOREIGN KEY "
                f"({', '.join(map(quote, cols))}) "
                f"REFERENCES {quote(table_names[fk.ref_table])} "
                f"({', '.join(map(quote, ref_cols))}){actions} NOT VALID",
                validate=f"ALTER TABLE {quote(tp.target)} VALIDATE CONSTRAINT {quote(name)}",
                fk_id=fk.sqlite_id,
            )
        )
    return found


def _unique_key(parent: Table, columns: list[str]) -> bool:
    """``columns`` are exactly the parent's primary key or a unique index's columns."""
    want = {fold(c) for c in columns}
    keys = [parent.pk] if parent.pk else []
    if parent.rowid_alias:
        keys.append([parent.rowid_alias])
    keys += [ix.columns for ix in parent.indexes if ix.unique and ix.where is None]
    return any(all(keys_col) and {fold(c) for c in keys_col} == want for keys_col in keys)


def plan_triggers(
    catalog: Catalog, found: list[Any], rules: dict[str, Any], name_for: Any, notes: list[str]
) -> list[TriggerPlan]:
    """Every trigger translated (or why not); ``[trigger.<name>] sql = "..."`` in the cast
    file replaces one with the user's own PostgreSQL, or "" leaves it out."""
    fn_scope: set[str] = set()  # functions: their own namespace; triggers: one per table
    scopes: dict[str, set[str]] = {}
    triggers = [
        plan_trigger(catalog, t, scopes.setdefault(t.table.lower(), set()), fn_scope, name_for)
        for t in found
    ]
    for tp in triggers:
        rule = rules.get(tp.source)
        if rule is not None:
            tp.function_sql, tp.trigger_sql, tp.probes = "", str(rule["sql"]), []
            tp.shape, tp.error = (
                ("replaced by --cast" if rule["sql"] else "left out by --cast"),
                None,
            )
            notes.append(f"trigger {tp.source}: {tp.shape}")
    return triggers
