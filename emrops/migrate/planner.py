"""Build a migration plan from any SQLite database: reflect, profile, map, and write the DDL
(see plan.py for what a plan holds)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from emrops.db.appdefs import register_stand_ins
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import Busy, UsageError
from emrops.migrate import appdefs
from emrops.migrate import profile as prof
from emrops.migrate.casts import check_casts, named_rules
from emrops.migrate.columns import SYSTEM_COLUMNS, follow_key, name_sequences, plan_table
from emrops.migrate.journal import JOURNAL
from emrops.migrate.objects import (
    foreign_keys,
    plan_triggers,
    plan_view,
    post_objects,
)
from emrops.migrate.pgcatalog import CATALOG_RELATIONS
from emrops.migrate.plan import PLAN_VERSION, Plan, PlanAnomaly, PostObject, TablePlan, is_text
from emrops.migrate.reflect import View, fold, parse_conflict_clauses, reflect, tokens
from emrops.migrate.sql import Catalog
from emrops.migrate.typemap import shorten


def open_source(path: Path, timeout: float = 10.0) -> sqlite3.Connection:
    """Open an SQLite file read-only (never modified, never switched to WAL); a write lock
    another process holds is waited for ``timeout`` seconds, then Busy (exit 75)."""
    if not path.exists():
        raise UsageError(f"source database not found: {path}", hint="check the --from path")
    if path.is_file() and path.stat().st_size == 0:
        # SQLite reads a 0-byte file as an empty database, so plan said exit 0 and run then
        # failed at its backup (which refuses it, with a hint about --db): a database an app
        # uses is never 0 bytes, a mistyped path opened by sqlite3 is
        raise UsageError(
            f"{path} is empty (0 bytes): there is no database in it to migrate",
            hint="check the --from path (opening a wrong path with sqlite3 creates an empty "
            "file there)",
        )
    conn = open_sqlite(path, check_same_thread=False, timeout=timeout)
    try:
        conn.execute("PRAGMA busy_timeout = 0")  # open_sqlite's probe waited already
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            # another process holds the write lock (an app mid-transaction, a browser that
            # keeps its history locked, a sqlite3 shell with BEGIN EXCLUSIVE): not damage
            raise Busy(
                f"{path} is locked by another process (SQLite: {exc}); waited for it",
                hint="stop the program that has it open (or end its transaction), or migrate a "
                'copy: sqlite3 SOURCE ".backup copy.db" (it waits for the lock too)',
            ) from None
        raise UsageError(
            f"{path} is not an SQLite database ({exc})",
            hint="point --from at an SQLite database file",
        ) from None
    register_stand_ins(conn)  # the app's own collations (see emrops/db/appdefs.py)
    encoding = conn.execute("PRAGMA encoding").fetchone()[0]
    if encoding != "UTF-8":
        conn.close()
        # the copy and the checksums read text as its stored bytes, which would be UTF-16
        raise UsageError(
            f"{path} stores its text as {encoding}; migrate-db reads UTF-8 databases",
            hint=f"make a UTF-8 copy and migrate that (the source is left as it is): "
            f"sqlite3 {path} .dump | sqlite3 {path.with_name(path.stem + '-utf8.db')}",
        )
    return conn


def _key_types(
    conn: sqlite3.Connection,
    schema: Any,
    plans: list[TablePlan],
    profiles: dict[str, prof.TableProfile],
    casts: dict[str, Any],
    notes: list[str],
) -> None:
    """A foreign key's columns take the types of the columns they reference, where the types
    differ in a way PostgreSQL refuses a key between (text and bigint, text and citext) and
    the values allow it (:func:`columns.follow_key`); a column a cast rule names is left as
    the rule says."""
    by_name = {fold(t.name): (t, tp) for t, tp in zip(schema.tables, plans, strict=True)}
    for _round in schema.tables:  # a chain of keys (a -> b -> c) settles in as many rounds
        changed = False
        for table, tp in zip(schema.tables, plans, strict=True):
            for fk in table.foreign_keys:
                parent = by_name.get(fold(fk.ref_table))
                if parent is None or len(fk.columns) != len(fk.ref_columns):
                    continue
                for child_col, parent_col in zip(fk.columns, fk.ref_columns, strict=True):
                    cp, pp = _column(tp, child_col), _column(parent[1], parent_col)
                    if cp is None or pp is None or cp.source in casts.get(table.name, {}):
                        continue
                    want, have = pp.pg_type, cp.pg_type
                    if want == have or (is_text(want) and is_text(have)):
                        continue
                    p = profiles[table.name].columns[cp.source]
                    where = f"{parent[1].target}.{pp.target}"
                    if follow_key(conn, table, tp, cp.source, p, want, where):
                        changed = True
                        notes.append(
                            f"{table.name}.{cp.source}: foreign key to {parent[0].name}."
                            f"{pp.source}: {have} -> {want}, the type of the key it references"
                        )
        if not changed:
            return


def dependency_order(views: list[View]) -> list[View]:
    """Views after the views they select from (SQLite keeps them in creation order, and a view
    may name one created after it), so each is translated knowing the columns of those; the
    creation order otherwise, and for a cycle (which SQLite refuses to use)."""
    names = {v.name.lower(): v for v in views}
    needs = {
        v.name: {
            names[t[2].strip('"`[]').lower()].name
            for t in tokens(v.select)
            if t[2].strip('"`[]').lower() in names and t[2].strip('"`[]').lower() != v.name.lower()
        }
        for v in views
    }
    done: list[View] = []
    placed: set[str] = set()
    while len(done) < len(views):
        ready = [v for v in views if v.name not in placed and needs[v.name] <= placed]
        if not ready:  # a cycle: the rest as they are
            ready = [v for v in views if v.name not in placed]
        for v in ready:
            done.append(v)
            placed.add(v.name)
    return done


def _column(tp: TablePlan, name: str) -> Any:
    return next((c for c in tp.columns if fold(c.source) == fold(name)), None)


_KEYED = "for the old behaviour the app writes INSERT ... ON CONFLICT (...) DO {}"
_CONFLICT_EFFECT = {
    **{
        (kind, "REPLACE"): "a write that duplicated the key deleted the old row in SQLite; "
        "PostgreSQL fails it with a unique violation; " + _KEYED.format("UPDATE")
        for kind in ("PRIMARY KEY", "UNIQUE")
    },
    **{
        (kind, "IGNORE"): "a write that duplicated the key was skipped in SQLite; PostgreSQL "
        "fails it with a unique violation; " + _KEYED.format("NOTHING")
        for kind in ("PRIMARY KEY", "UNIQUE")
    },
    ("NOT NULL", "REPLACE"): "a NULL written there became the column's default in SQLite; "
    "PostgreSQL refuses it (not-null violation)",
    ("NOT NULL", "IGNORE"): "a row writing NULL there was skipped in SQLite; PostgreSQL "
    "refuses it (not-null violation)",
    **{
        (kind, how): f"SQLite's {how} kept its own error handling (FAIL keeps the statement's "
        "earlier changes, ROLLBACK ends the transaction); PostgreSQL fails the statement and "
        "aborts the transaction"
        for kind in ("PRIMARY KEY", "UNIQUE", "NOT NULL")
        for how in ("FAIL", "ROLLBACK")
    },
}


def build_plan(
    conn: sqlite3.Connection, casts: dict[str, Any] | None = None, *, full: bool = True
) -> Plan:
    """Reflect and profile the open source database and decide everything the run will do.

    ``full=False`` (used by ``run``) leaves out what the run checks anyway, so it does not
    read the data twice for it: NUL bytes and invalid UTF-8 in text (the copy checks every
    chunk and handles such values row by row: abort naming the row, or reject). Rows whose
    foreign key points nowhere are the plan's trial's (:func:`trial.fk_orphans`)."""
    casts = casts or {}
    schema = reflect(conn)
    check_casts(schema, casts)
    appdefs.check_generated(conn, schema)
    appdefs.check_keys(conn, schema)
    # a source table of one of these names gets another one (renames): the journal's, and the
    # catalog's, which would shadow it in every statement
    taken: set[str] = {JOURNAL, *CATALOG_RELATIONS}
    renames: list[dict[str, str]] = []

    def name_for(kind: str, name: str, scope: set[str]) -> str:
        new = name or "unnamed"  # SQLite allows "" as a name, PostgreSQL no empty identifier
        if kind == "column" and name in SYSTEM_COLUMNS:  # refused as a table's column
            new += "_"
            while new in scope:
                new += "_"
        new = shorten(new, scope)
        scope.add(new)
        if new != name:
            renames.append({"kind": kind, "from": name, "to": new})
        return new

    # a table named "" last, so that its new name steps around the other tables
    table_names = {
        t.name: name_for("table", t.name, taken)
        for t in sorted(schema.tables, key=lambda t: not t.name)
    }
    plans: list[TablePlan] = []
    anomalies: list[PlanAnomaly] = []
    notes: list[str] = list(schema.notes)
    for table in schema.tables:
        notes += [
            f"{table.name}.{where}: {kind} ON CONFLICT {how}: {_CONFLICT_EFFECT[kind, how]}"
            for where, kind, how in parse_conflict_clauses(table.sql)
        ]
    col_maps: dict[str, dict[str, str]] = {}
    profiles: dict[str, prof.TableProfile] = {}
    with prof.shared_readers(conn):  # one set of profiling connections for every table
        for table in schema.tables:
            tp, cmap, profiles[table.name] = plan_table(
                conn,
                table,
                table_names[table.name],
                casts.get(table.name, {}),
                name_for,
                anomalies,
                notes,
                full,
            )
            col_maps[table.name] = cmap
            plans.append(tp)
    _key_types(conn, schema, plans, profiles, casts, notes)
    index_scope: set[str] = {*table_names.values(), *CATALOG_RELATIONS}
    for tp in plans:
        name_sequences(tp, index_scope)
    catalog = Catalog()
    for table, tp in zip(schema.tables, plans, strict=True):
        catalog.add(
            table.name,
            tp.target,
            [(c.source, c.target, c.pg_type) for c in tp.columns],
            rowid=table.rowid_alias,
            key=table.pk,
        )
    fks: list[PostObject] = []
    by_name = {t.name: t for t in schema.tables}
    for table, tp in zip(schema.tables, plans, strict=True):
        post_objects(table, tp, col_maps[table.name], catalog, index_scope, name_for, notes)
        fks += foreign_keys(table, tp, col_maps, table_names, index_scope, name_for, notes, by_name)
    view_rules = named_rules(casts, by_name, "view")
    views = [
        plan_view(
            conn, catalog, view, name_for("view", view.name, index_scope), view_rules, name_for
        )
        for view in dependency_order(schema.views)
    ]
    notes += [f"view {v.source}: {v.note}" for v in views if v.note]
    triggers = plan_triggers(
        catalog, schema.triggers, named_rules(casts, by_name, "trigger"), name_for, notes
    )
    skipped = list(schema.skipped) + [
        f"trigger {t.source} (not translated: {t.error}): {t.sql}" for t in triggers if t.error
    ]
    plans.sort(key=lambda t: t.rows, reverse=True)
    extensions = ["citext"] if any(c.pg_type == "citext" for t in plans for c in t.columns) else []
    return Plan(
        PLAN_VERSION,
        plans,
        views,
        fks,
        renames,
        anomalies,
        notes,
        skipped,
        extensions=extensions,
        triggers=triggers,
    )
