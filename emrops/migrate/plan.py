"""Build a migration plan from any SQLite database: reflect, profile, map, and write the DDL.

The plan is plain data (JSON-serialisable): ``run`` stores it in the target's journal so that
``verify`` and ``rollback`` later use exactly the decisions the copy used.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops.db.sqlite_file import open_sqlite
from emrops.errors import UsageError
from emrops.migrate import profile as prof
from emrops.migrate.journal import JOURNAL
from emrops.migrate.reflect import Schema, Table, quote, reflect, unquote
from emrops.migrate.sql import Catalog, TranslationError, defaults, index_element
from emrops.migrate.typemap import Anomaly, is_fast, map_column, shorten

PLAN_VERSION = 1


@dataclass
class ColumnPlan:
    source: str
    target: str
    declared: str
    pg_type: str
    converter: str
    reason: str
    notnull: bool = False
    identity: bool = False
    default: str | None = None
    select_blob: bool = False  # read as bytes (invalid UTF-8 or bytea target)
    fast: bool = False  # every value already fits: no per-value conversion
    notes: list[str] = field(default_factory=list)
    # cast rule null_key = "generate": NULL keys get null_fill, null_fill + 1, ... in rowid order
    null_fill: int | None = None


@dataclass
class PostObject:
    """Something built after the copy: kind is pk, unique, check, index, fk or identity."""

    kind: str
    table: str  # PostgreSQL table name
    name: str  # PostgreSQL object name
    sql: str
    validate: str | None = None  # second statement (FK VALIDATE)
    source_expr: str | None = None  # a CHECK's SQLite expression (plan evaluates it)


@dataclass
class TablePlan:
    source: str
    target: str
    rows: int
    without_rowid: bool
    key: list[str]  # source key columns ("rowid" for rowid tables)
    columns: list[ColumnPlan]
    create_sql: str
    post: list[PostObject] = field(default_factory=list)
    pk: list[str] = field(default_factory=list)  # source primary-key columns


@dataclass
class ViewPlan:
    source: str
    target: str
    sql: str  # the SELECT as PostgreSQL (or the --cast replacement)
    columns: list[str] = field(default_factory=list)  # output names, as SQLite names them
    note: str | None = None  # why the SQL could not be translated (sent as written)


@dataclass
class TriggerPlan:
    source: str
    table: str  # PostgreSQL table
    target: str  # PostgreSQL trigger name
    function: str  # its PL/pgSQL function
    sql: str  # the SQLite CREATE TRIGGER
    function_sql: str = ""
    trigger_sql: str = ""
    shape: str = ""  # touch or statements
    error: str | None = None  # why it was not translated


@dataclass
class PlanAnomaly:
    table: str
    column: str
    condition: str
    count: int
    message: str
    key: dict[str, Any] | None = None
    value: Any = None


@dataclass
class Plan:
    version: int
    tables: list[TablePlan]
    views: list[ViewPlan]
    fks: list[PostObject]
    renames: list[dict[str, str]]
    anomalies: list[PlanAnomaly]
    notes: list[str]
    skipped: list[str]
    extensions: list[str] = field(default_factory=list)  # created before the tables
    triggers: list[TriggerPlan] = field(default_factory=list)

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        tables = [
            TablePlan(
                **{
                    **t,
                    "columns": [ColumnPlan(**c) for c in t["columns"]],
                    "post": [PostObject(**p) for p in t["post"]],
                }
            )
            for t in data["tables"]
        ]
        return cls(
            version=data["version"],
            tables=tables,
            views=[ViewPlan(**v) for v in data["views"]],
            fks=[PostObject(**p) for p in data["fks"]],
            renames=data["renames"],
            anomalies=[PlanAnomaly(**a) for a in data["anomalies"]],
            notes=data["notes"],
            skipped=data["skipped"],
            extensions=data.get("extensions", []),
            triggers=[TriggerPlan(**t) for t in data.get("triggers", [])],
        )

    def ddl(self) -> str:
        """The whole DDL, in execution order, as one SQL script."""
        lines = ["-- emrops migrate-db plan: tables (created before the copy)"]
        lines += [f"CREATE EXTENSION IF NOT EXISTS {quote(e)};" for e in self.extensions]
        lines += [t.create_sql + ";" for t in self.tables]
        lines.append("-- after the copy: keys, constraints, indexes, identities")
        for t in self.tables:
            lines += [p.sql + ";" for p in t.post]
        lines += [p.sql + ";" for p in self.fks] + [
            p.validate + ";" for p in self.fks if p.validate
        ]
        lines.append("-- views")
        lines += [f"CREATE VIEW {quote(v.target)} AS {v.sql};" for v in self.views]
        lines.append("-- triggers")
        for trig in self.triggers:
            if trig.error:
                lines.append(f"-- trigger {trig.source} not translated: {trig.error}")
            else:
                lines += [x + ";" for x in (trig.function_sql, trig.trigger_sql) if x]
        return "\n".join(lines) + "\n"


def load_casts(path: Path | None) -> dict[str, dict[str, dict[str, Any]]]:
    """Cast file (TOML): ``[table.column]`` or ``[table] column = {type = ..., epoch = ...}``."""
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"cast file not found: {path}", hint="check the --cast path") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cast file {path} is not valid TOML: {exc}") from None
    for table, cols in data.items():
        if not isinstance(cols, dict) or not all(isinstance(r, dict) for r in cols.values()):
            raise UsageError(
                f"cast file {path}: [{table}] must hold one table per column",
                hint='write [mytable.mycolumn] then type = "text"',
            )
    return data


def open_source(path: Path) -> sqlite3.Connection:
    """Open an SQLite file read-only (never modified, never switched to WAL)."""
    if not path.exists():
        raise UsageError(f"source database not found: {path}", hint="check the --from path")
    conn = open_sqlite(path, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise UsageError(
            f"{path} is not an SQLite database ({exc})",
            hint="point --from at an SQLite database file",
        ) from None
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


def build_plan(
    conn: sqlite3.Connection, casts: dict[str, Any] | None = None, *, full: bool = True
) -> Plan:
    """Reflect and profile the open source database and decide everything the run will do.

    ``full=False`` (used by ``run``) leaves out what the run checks anyway, so it does not
    read the data twice for it: NUL bytes and invalid UTF-8 in text (the copy checks every
    chunk and handles such values row by row: abort naming the row, or reject) and rows whose
    foreign key points nowhere (PostgreSQL's VALIDATE CONSTRAINT names them, and the
    constraint is reported left NOT VALID)."""
    casts = casts or {}
    schema = reflect(conn)
    _check_casts(schema, casts)
    taken: set[str] = {JOURNAL}  # a source table of that name gets another one (renames)
    renames: list[dict[str, str]] = []

    def name_for(kind: str, name: str, scope: set[str]) -> str:
        new = shorten(name, scope)
        scope.add(new)
        if new != name:
            renames.append({"kind": kind, "from": name, "to": new})
        return new

    table_names = {t.name: name_for("table", t.name, taken) for t in schema.tables}
    plans: list[TablePlan] = []
    anomalies: list[PlanAnomaly] = []
    notes: list[str] = list(schema.notes)
    col_maps: dict[str, dict[str, str]] = {}
    for table in schema.tables:
        tp, cmap = _plan_table(
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
    index_scope: set[str] = set(table_names.values())
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
        _post_objects(table, tp, col_maps[table.name], catalog, index_scope, name_for, notes)
        for fk in table.foreign_keys:
            if fk.ref_table not in by_name:
                notes.append(f"{table.name}: foreign key to missing table {fk.ref_table} skipped")
                continue
            ref_map = col_maps[fk.ref_table]
            unknown = [c for c in fk.columns if c.lower() not in col_maps[table.name]] + [
                c for c in fk.ref_columns if c.lower() not in ref_map
            ]
            if unknown or not fk.ref_columns or len(fk.ref_columns) != len(fk.columns):
                # SQLite accepts REFERENCES to a column that does not exist (or to a table
                # without a primary key) and only fails when the key is enforced
                notes.append(
                    f"{table.name}: foreign key ({', '.join(fk.columns)}) to {fk.ref_table}"
                    f"({', '.join(fk.ref_columns)}) names no such key there; skipped"
                )
                continue
            cols = [col_maps[table.name][c.lower()] for c in fk.columns]
            ref_cols = [ref_map[c.lower()] for c in fk.ref_columns]
            name = name_for(
                "constraint", fk.name or f"{tp.target}_{'_'.join(cols)}_fkey", index_scope
            )
            actions = ""
            for verb, action in (("DELETE", fk.on_delete), ("UPDATE", fk.on_update)):
                if action and action.upper() != "NO ACTION":
                    actions += f" ON {verb} {action.upper()}"
            fks.append(
                PostObject(
                    "fk",
                    tp.target,
                    name,
                    f"ALTER TABLE {quote(tp.target)} ADD CONSTRAINT {quote(name)} FOREIGN KEY "
                    f"({', '.join(map(quote, cols))}) "
                    f"REFERENCES {quote(table_names[fk.ref_table])} "
                    f"({', '.join(map(quote, ref_cols))}){actions} NOT VALID",
                    validate=f"ALTER TABLE {quote(tp.target)} VALIDATE CONSTRAINT {quote(name)}",
                )
            )
    if full:
        _orphans(conn, schema, notes)
    view_rules = _named_rules(casts, by_name, "view")
    views = [
        _plan_view(
            conn, catalog, view, name_for("view", view.name, index_scope), view_rules, name_for
        )
        for view in schema.views
    ]
    notes += [f"view {v.source}: {v.note}" for v in views if v.note]
    fn_scope: set[str] = set()  # functions: their own namespace; triggers: one per table
    trig_scopes: dict[str, set[str]] = {}
    trigger_rules = _named_rules(casts, by_name, "trigger")
    triggers = [
        _plan_trigger(
            catalog, t, trig_scopes.setdefault(t.table.lower(), set()), fn_scope, name_for
        )
        for t in schema.triggers
    ]
    for tp in triggers:
        rule = trigger_rules.get(tp.source)
        if rule is not None:  # the user's own PostgreSQL for it, or "" to leave it out
            tp.function_sql, tp.trigger_sql = "", str(rule["sql"])
            tp.shape, tp.error = (
                ("replaced by --cast" if rule["sql"] else "left out by --cast"),
                None,
            )
            notes.append(f"trigger {tp.source}: {tp.shape}")
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


def _plan_trigger(
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
    return tp


def _translated(fn: Any, fallback: Any) -> Any:
    """A translation, or the SQL as written when sqlglot cannot read it (PostgreSQL then
    reports the object, with its SQL, when it is built)."""
    try:
        return fn()
    except TranslationError:
        return fallback


def _plan_view(
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
    columns = [(c, name_for("column", c, scope)) for c in names]
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


def _check_casts(schema: Schema, casts: dict[str, Any]) -> None:
    tables = {t.name: t for t in schema.tables}
    named = {
        "view": ({v.name for v in schema.views}, "the view's SELECT as PostgreSQL SQL"),
        "trigger": (
            {t.name for t in schema.triggers},
            'CREATE FUNCTION ... ; CREATE TRIGGER ... as PostgreSQL SQL, or "" to leave it out',
        ),
    }
    for kind, (names, what) in named.items():
        for name, rule in _named_rules(casts, tables, kind).items():
            if name not in names:
                raise UsageError(
                    f"cast file names unknown {kind} {name!r}",
                    hint=f"{kind}s: {', '.join(sorted(names)) or '(none)'}",
                )
            if (
                not isinstance(rule, dict)
                or not isinstance(rule.get("sql"), str)
                or set(rule) != {"sql"}
            ):
                raise UsageError(
                    f'cast file: [{kind}.{name}] takes one key, sql = "..."',
                    hint=f"write {what}",
                )
    for tname, cols in casts.items():
        if tname in named and tname not in tables:
            continue
        if tname not in tables:
            raise UsageError(
                f"cast file names unknown table {tname!r}",
                hint=f"tables: {', '.join(sorted(tables)) or '(none)'}",
            )
        known = {c.name for c in tables[tname].columns}
        for cname in cols:
            if cname not in known:
                raise UsageError(
                    f"cast file names unknown column {tname}.{cname}",
                    hint=f"columns of {tname}: {', '.join(sorted(known))}",
                )


def _plan_table(
    conn,
    table: Table,
    target: str,
    rules: dict[str, Any],
    name_for,
    anomalies,
    notes,
    check_text: bool = True,
):
    json_checks = _json_checks(table)
    json_cols = {c.name for c in table.columns if "JSON" in c.declared.upper()} | set(json_checks)
    tprof = prof.profile_table(conn, table, json_cols, check_text)
    col_scope: set[str] = set()
    columns: list[ColumnPlan] = []
    cmap: dict[str, str] = {}
    for col in table.columns:
        p = tprof.columns[col.name]
        rule = rules.get(col.name)
        declared = col.declared
        implied = json_checks.get(col.name)
        if (
            implied is not None
            and not (rule or {}).get("type")
            and p.n_text
            and p.n_json == p.n_values
        ):
            # Django's JSONField on SQLite: text with CHECK (JSON_VALID(col) OR col IS
            # NULL); jsonb implies the check, which is dropped
            declared = "JSON"
            table.checks = [c for c in table.checks if c is not implied]
            notes.append(
                f"{table.name}.{col.name}: CHECK ({implied.expr}) is implied by jsonb "
                "(dropped); the column becomes jsonb"
            )
        try:
            m = map_column(declared, p, rowid_alias=col.name == table.rowid_alias, rule=rule)
        except ValueError as exc:
            raise UsageError(f"cast rule for {table.name}.{col.name}: {exc}") from None
        if declared != col.declared:
            m.reason = f"{col.declared or 'untyped'} with CHECK json_valid: every value is JSON"
        _collation(col, m, rule)
        null_fill = _null_keys(conn, table, col, p, m, rule)
        if m.pg_type.startswith("numeric("):
            _numeric_fit(conn, table, col.name, m)
        if m.converter == "ts" and check_text and p.n_text:
            _precision_note(conn, table, col.name, m)
        cname = name_for("column", col.name, col_scope)
        cmap[col.name.lower()] = cname
        if rule and "default" in rule:
            default, ok = (str(rule["default"]) if rule["default"] != "" else None), True
        else:
            default, ok, why = _default(col.default, m)
            if not ok:
                m.anomalies.append(Anomaly("default", 1, why))
        cp = ColumnPlan(
            col.name,
            cname,
            col.declared,
            m.pg_type,
            m.converter,
            m.reason,
            # a primary key is NOT NULL in PostgreSQL: a NULL key is rejected by the copy
            # (--on-error reject) or given a generated key (null_key rule), never loaded
            notnull=col.notnull or bool(col.pk_pos),
            identity=m.identity or null_fill is not None,
            default=default,
            select_blob=m.converter == "bytea" or bool(p.n_bad_utf8),
            notes=list(m.notes),
        )
        cp.null_fill = null_fill
        cp.fast = is_fast(m, p, cp.select_blob) and null_fill is None
        if col.generated:
            cp.notes.append("generated column: copied as stored values")
        columns.append(cp)
        for a in m.anomalies:
            where = (
                a.where
                or _anomaly_where(a.condition, m.pg_type)
                or prof.CONDITIONS.get(a.condition, "1")
            )
            ex = prof.example(conn, table, col.name, where)
            ex_key, value = ex if ex else (None, None)
            anomalies.append(
                PlanAnomaly(table.name, col.name, a.condition, a.count, a.message, ex_key, value)
            )
        for n in cp.notes:
            notes.append(f"{table.name}.{col.name}: {n}")
    defs = []
    for c in columns:
        d = f"{quote(c.target)} {c.pg_type}"
        if c.identity:
            d += " GENERATED BY DEFAULT AS IDENTITY"
        if c.notnull or c.identity:
            d += " NOT NULL"
        if c.default is not None:
            d += f" DEFAULT {c.default}"
        defs.append(d)
    create = f"CREATE TABLE {quote(target)} (" + ", ".join(defs) + ")"
    key = prof.key_names(table)  # the row id's free name for rowid tables
    tp = TablePlan(
        table.name, target, tprof.rows, table.without_rowid, key, columns, create, pk=list(table.pk)
    )
    return tp, cmap


def _collation(col: Any, m: Any, rule: dict[str, Any] | None) -> None:
    """``COLLATE NOCASE`` text becomes citext (case-insensitive comparisons, and unique
    indexes, as in SQLite); other collations are dropped with a note."""
    if not col.collation or col.collation == "BINARY":
        return
    texty = m.pg_type == "text" or m.pg_type.startswith("varchar(")
    if col.collation == "NOCASE" and texty and not (rule or {}).get("type"):
        was = m.pg_type
        m.pg_type = "citext"
        m.notes.append(
            f"COLLATE NOCASE: citext instead of {was} (extension citext), so comparisons and "
            "unique indexes stay case-insensitive (citext folds all letters, SQLite only ASCII)"
            + (f"; the {was} length limit is not kept" if was != "text" else "")
        )
    else:
        m.notes.append(f"COLLATE {col.collation} dropped: PostgreSQL compares as binary")


_JSON_CHECK = re.compile(
    r"""\(*\s*json_valid\s*\(\s*(?P<c>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|\w+)\s*\)
        (?:\s+OR\s+(?P<n>"(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|\w+)\s+IS\s+NULL)?\s*\)*""",
    re.I | re.X,
)


def _json_checks(table: Table) -> dict[str, Any]:
    """CHECKs that only say a column holds JSON (``json_valid(c)``, optionally ``OR c IS
    NULL``), by column name."""
    names = {c.name.lower(): c.name for c in table.columns}
    found: dict[str, Any] = {}
    for chk in table.checks:
        m = _JSON_CHECK.fullmatch(chk.expr.strip())
        if m is None:
            continue
        col = unquote(m.group("c")).lower()
        if m.group("n") is not None and unquote(m.group("n")).lower() != col:
            continue
        if col in names:
            found[names[col]] = chk
    return found


def _default(expr: str | None, m: Any) -> tuple[str | None, bool, str]:
    """(PostgreSQL default, translated?, why not) for a column mapped to ``m``, by
    :mod:`emrops.migrate.sql.defaults`."""
    rule = defaults.translate(expr, m.pg_type)
    if rule.note:
        m.notes.append(rule.note)
    return rule.sql, rule.ok, rule.message


def _null_keys(conn, table: Table, col, p, m, rule: dict[str, Any] | None) -> int | None:
    """NULLs in a primary key that is not a rowid alias (``id INTEGER PRIMARY KEY DESC``,
    ``INT PRIMARY KEY``, a composite key: SQLite lets them hold NULLs, PostgreSQL does not).
    Without a rule they are an anomaly; the rule ``null_key = "generate"`` on a single
    integer key gives them new keys above the largest one (returned: the first such key)."""
    choice = (rule or {}).get("null_key")
    if choice not in (None, "generate"):
        raise UsageError(
            f'cast rule for {table.name}.{col.name}: null_key must be "generate", not {choice!r}',
            hint="rows with NULL keys are rejected with --on-error reject instead",
        )
    if not col.pk_pos or table.rowid_alias or table.without_rowid or not p.n_null:
        return None
    if choice == "generate":
        if len(table.pk) != 1 or m.pg_type != "bigint":
            raise UsageError(
                f'cast rule for {table.name}.{col.name}: null_key = "generate" needs a '
                f"single-column integer primary key (this one is {m.pg_type}, "
                f"{len(table.pk)} column(s))",
                hint="reject those rows instead: run with --on-error reject",
            )
        c, t = quote(col.name), quote(table.name)
        top = conn.execute(f"SELECT max({c}) FROM {t} WHERE typeof({c}) = 'integer'").fetchone()
        start = int(top[0] or 0) + 1
        m.notes.append(
            f"{p.n_null} NULL key(s) get generated keys from {start} on (cast rule null_key)"
        )
        return start
    m.anomalies.append(
        Anomaly(
            "null",
            p.n_null,
            "NULL in a primary key that is not a rowid alias (SQLite allows it, PostgreSQL "
            'does not): add a cast rule null_key = "generate" to give those rows new keys, '
            "or run with --on-error reject to write them to the reject file",
        )
    )
    return None


_LONG_FRACTION_GLOB = "*:[0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9][0-9]*"


def _precision_note(conn: sqlite3.Connection, table: Table, column: str, m: Any) -> None:
    """Timestamps with more than 6 fractional digits: PostgreSQL keeps microseconds."""
    c = quote(column)
    n = conn.execute(
        f"SELECT count(*) FROM {quote(table.name)} WHERE typeof({c}) = 'text' AND {c} GLOB ?",
        (_LONG_FRACTION_GLOB,),
    ).fetchone()[0]
    if n:
        m.notes.append(
            f"{n} timestamp(s) with more than 6 fractional digits are rounded to microseconds"
        )


def _named_rules(casts: dict[str, Any], tables: dict[str, Any], kind: str) -> dict[str, Any]:
    """``[view.<name>] sql = "..."`` (a replacement SELECT) and ``[trigger.<name>] sql =
    "..."`` (replacement DDL, or "" to leave the trigger out). A table named ``view`` or
    ``trigger`` keeps its column rules there instead."""
    if kind in tables:
        return {}
    rules = casts.get(kind, {})
    return rules if isinstance(rules, dict) else {}


def _numeric_fit(conn: sqlite3.Connection, table: Table, column: str, m: Any) -> None:
    """numeric(p,s) rounds extra decimals and rejects too many digits: count such values."""
    p, s = (int(x) for x in m.pg_type[len("numeric(") : -1].split(","))
    c = quote(column)
    where = (
        f"typeof({c}) IN ('integer', 'real') AND (round({c}, {s}) <> {c} "
        f"OR abs({c}) >= {10 ** (p - s)})"
    )
    n = conn.execute(f"SELECT count(*) FROM {quote(table.name)} WHERE {where}").fetchone()[0]
    if n:
        m.anomalies.append(
            Anomaly(
                "numeric_fit",
                n,
                f"values with more than {s} decimals or "
                f"{p - s} integer digits would be rounded or rejected by "
                f'{m.pg_type}; add a cast rule type = "numeric"',
            )
        )
        m.anomalies[-1].where = where.replace(c, "{c}")


def _anomaly_where(condition: str, pg_type: str) -> str | None:
    """Predicate selecting the offending values of an anomaly, for its example row."""
    return {
        "bool_bad": "{c} IS NOT NULL AND NOT (typeof({c}) = 'integer' AND {c} IN (0, 1))",
        "json_bad": "{c} IS NOT NULL AND NOT (typeof({c}) = 'text' AND json_valid({c}))",
        "date_bad": f"{{c}} IS NOT NULL AND NOT ({prof.CONDITIONS['date']})",
        "iso_bad": f"{{c}} IS NOT NULL AND NOT ({prof.CONDITIONS['iso']}) "
        f"AND NOT ({prof.CONDITIONS['date']})",
        "mixed": "typeof({c}) NOT IN ('null', 'text')",
        "default": "1",
    }.get(condition)


def _post_objects(
    table: Table,
    tp: TablePlan,
    cmap: dict[str, str],
    catalog: Catalog,
    scope: set[str],
    name_for,
    notes: list[str],
) -> None:
    t = quote(tp.target)
    if table.pk:
        name = name_for("constraint", f"{tp.target}_pkey", scope)
        cols = ", ".join(quote(cmap[c.lower()]) for c in table.pk)
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
            ucols = [cmap[c.lower()] for c in idx.columns]
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
        name = name_for("index", idx.name, scope)
        elements = []
        for e in idx.elements:
            sql, note = _translated(lambda e=e: index_element(e, catalog, table.name), (e, ""))
            elements.append(sql)
            if note:
                notes.append(f"index {idx.name}: {note}")
        sql = (
            f"CREATE {'UNIQUE ' if idx.unique else ''}INDEX IF NOT EXISTS {quote(name)} ON {t} "
            f"({', '.join(elements)})"
        )
        if idx.where:
            sql += " WHERE " + _translated(
                lambda w=idx.where: catalog.expr(w, table.name), idx.where
            )
        tp.post.append(PostObject("index", tp.target, name, sql))
    for i, chk in enumerate(table.checks, start=1):
        name = name_for("constraint", chk.name or f"{tp.target}_check{i if i > 1 else ''}", scope)
        expr = _translated(lambda chk=chk: catalog.expr(chk.expr, table.name), chk.expr)
        tp.post.append(
            PostObject(
                "check",
                tp.target,
                name,
                f"ALTER TABLE {t} ADD CONSTRAINT {quote(name)} CHECK ({expr})",
                source_expr=chk.expr,
            )
        )
    for c in tp.columns:
        if c.identity:
            seq = max(table.sequence or 0, 0)
            tp.post.append(
                PostObject(
                    "identity",
                    tp.target,
                    c.target,
                    f"SELECT setval(pg_get_serial_sequence('{t.replace(chr(39), chr(39) * 2)}', "
                    f"'{c.target.replace(chr(39), chr(39) * 2)}'), "
                    f"GREATEST(coalesce((SELECT max({quote(c.target)}) FROM {t}), 0), {seq}) "
                    "+ 1, false)",
                )
            )


def _orphans(conn: sqlite3.Connection, schema: Schema, notes: list[str]) -> None:
    """Rows whose foreign key points nowhere (SQLite enforces FKs only when asked to)."""
    for table in schema.tables:
        if not table.foreign_keys:
            continue
        try:
            rows = conn.execute(f"PRAGMA foreign_key_check({quote(table.name)})").fetchall()
        except sqlite3.OperationalError as exc:  # "foreign key mismatch": a key named wrong
            notes.append(f"{table.name}: foreign keys not checked for orphans ({exc})")
            continue
        if rows:
            first = rows[0]
            notes.append(
                f"{table.name}: {len(rows)} row(s) whose foreign key to {first[2]} "
                "points to no row "
                f"(first rowid {first[1]}); that constraint will stay NOT VALID"
            )
