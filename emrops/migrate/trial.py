"""``plan``'s trial on the target: every statement the run would execute, tried for real.

All the DDL of a plan (tables with their defaults, keys, UNIQUE and CHECK constraints,
indexes, identities, foreign keys, views, trigger functions and triggers) runs in a scratch
schema inside one transaction that is always rolled back, so nothing is left on the target
and what is already there is not in the way. Each statement runs under a savepoint: one
failure does not hide the next, and each is reported with the SQL and PostgreSQL's own
message. Views are retried in rounds as the run builds them (one may select from a later
one); trigger functions are sent whole (their bodies hold ``;``). A plan whose trial is clean
will not fail on schema during ``run``.

CHECK constraints that compile are then evaluated over the source rows (SQLite's expression on
SQLite's values; a CHECK is false only when the expression is false, NULL passes in both
engines), since a row that violates one makes the run's ALTER TABLE fail. Those that cannot be
evaluated there are listed as checked at run.

Privileges it needs on the target: CONNECT, CREATE on the database (the scratch schema) and
whatever the DDL itself needs (the same as ``run``; CREATE EXTENSION citext when a column
becomes citext, which PostgreSQL 13+ lets a database owner do for a trusted extension).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import psycopg

from emrops.errors import EmropsError
from emrops.migrate import checkeval, journal
from emrops.migrate.batching import fetch_batches
from emrops.migrate.convert import canon_function, canon_kind
from emrops.migrate.plan import Plan, is_text
from emrops.migrate.reflect import Check, Table, quote, rowid_name
from emrops.migrate.sql import NOCASE_ELEMENT, missing_check


@dataclass
class SchemaFailure:
    kind: str  # table, pk, unique, check, index, identity, fk, view, trigger, extension, ...
    table: str | None
    name: str
    sql: str
    error: str
    hint: str = ""


@dataclass
class TrialResult:
    failures: list[SchemaFailure] = field(default_factory=list)
    checked_at_run: list[str] = field(default_factory=list)
    statements: int = 0
    notes: list[str] = field(default_factory=list)
    # (table, check) evaluated by the target over the source rows (checkeval)
    evaluated: set[tuple[str, str]] = field(default_factory=set)


def pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return (primary or str(exc).strip().splitlines()[0]).strip()


TOO_MANY_COLUMNS = (
    "PostgreSQL allows at most 1600 columns in a table (SQLite up to 2000, or more when built "
    "so): split the table in the source first, e.g. move some columns into a second table "
    "keyed by the same primary key"
)


def hint_for(kind: str) -> str:
    return {
        "table": "a column type or default PostgreSQL refuses: add a cast rule for the column "
        '(type = "..." or default = "...")',
        "check": "the CHECK uses something PostgreSQL lacks: rewrite it after the run, or drop "
        "it from the source schema",
        "index": "an index expression PostgreSQL refuses: recreate it by hand after the run",
        "view": "the view SQL does not compile on PostgreSQL: recreate it by hand after the run",
        "trigger": "the trigger does not translate or compile on PostgreSQL: give its "
        'PostgreSQL DDL in the cast file ([trigger.<name>] sql = "...") or leave it out '
        '(sql = "")',
        "extension": "ask the database owner to run CREATE EXTENSION citext, or add a cast rule "
        'type = "text" for the column',
    }.get(kind, "see PostgreSQL's message; a cast rule may change the column's type")


_JSONB_ERR = """CREATE FUNCTION emrops_jsonb_err(t text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM t::jsonb; RETURN NULL; EXCEPTION WHEN others THEN RETURN SQLERRM; END $$"""


def not_the_statements(exc: psycopg.Error) -> bool:
    """True for an error that says nothing about the statement tried: cancelled (a
    statement_timeout), the session ended or lost, the server out of a resource. Recorded as
    the statement's failure, it sent the user to write a cast rule for a timeout."""
    state = exc.sqlstate or ""
    return journal.is_lost(exc) or state == "57014" or state.startswith("53")


def try_plan(
    plan: Plan,
    target_url: str,
    extensions: list[str] | None = None,
    source: sqlite3.Connection | None = None,
) -> TrialResult:
    """Run every DDL statement of ``plan`` on the target in a rolled-back transaction; with
    ``source``, also parse every value of each jsonb column there."""
    result = TrialResult()
    scratch = f"emrops_plan_{secrets.token_hex(6)}"
    with journal.connect(target_url) as conn:
        try:
            try:
                conn.execute(f"CREATE SCHEMA {quote(scratch)}")
            except psycopg.Error as exc:
                if not_the_statements(exc):
                    raise
                raise EmropsError(
                    f"plan cannot try the statements on the target: {pg_message(exc)}",
                    hint="plan needs CONNECT and CREATE on the --to database (a scratch schema, "
                    "rolled back), as run does: GRANT CREATE ON DATABASE ... TO the user",
                ) from None
            conn.execute(f"SET LOCAL search_path TO {quote(scratch)}, public")

            def attempt(
                kind: str,
                table: str | None,
                name: str,
                sql: str,
                into: list[SchemaFailure] | None = None,
            ) -> bool:
                result.statements += 1
                try:
                    with conn.transaction():  # a savepoint inside the outer transaction
                        conn.execute(sql)
                    return True
                except psycopg.Error as exc:
                    if not_the_statements(exc):  # the server or a timeout, not this SQL
                        raise
                    hint = hint_for(kind)
                    if isinstance(exc, psycopg.errors.TooManyColumns):
                        hint = TOO_MANY_COLUMNS
                    (result.failures if into is None else into).append(
                        SchemaFailure(kind, table, name, sql, pg_message(exc), hint)
                    )
                    return False

            for ext in extensions or []:
                attempt("extension", None, ext, f"CREATE EXTENSION IF NOT EXISTS {quote(ext)}")
            created = {
                t.target for t in plan.tables if attempt("table", t.target, t.target, t.create_sql)
            }
            for t in plan.tables:
                if t.target not in created:
                    continue
                for obj in t.post:
                    attempt(obj.kind, t.target, obj.name, obj.sql)
            for fk in plan.fks:
                if fk.table in created:
                    attempt("fk", fk.table, fk.name, fk.sql)
            _views(plan, attempt, result)
            _triggers(plan, created, attempt, result)
            if source is not None:
                conn.execute(_JSONB_ERR)
                _jsonb_values(conn, source, plan, result)
                _target_checks(conn, source, plan, created, result)
        finally:
            conn.rollback()
    return result


def _target_checks(
    pg: psycopg.Connection,
    src: sqlite3.Connection,
    plan: Plan,
    created: set[str],
    result: TrialResult,
) -> None:
    """Each CHECK and translated index that compiled, evaluated by the target over the
    source's values (checkeval); a violated one is a ``check-data`` / ``index-data``
    failure."""
    failed = {(f.table, f.name) for f in result.failures if f.kind in ("check", "index")}
    for tp in plan.tables:
        if tp.target not in created:
            continue
        tried = [p for p in tp.post if (tp.target, p.name) not in failed]
        checks = [p for p in tried if p.kind == "check"]
        indexes = [p for p in tried if checkeval.translated_index(p)]
        indexes += checkeval.number_keys(tp, [p for p in tried if p not in indexes])
        if not checks and not indexes:
            continue
        found, done = checkeval.evaluate(pg, src, tp, checks, indexes)
        result.evaluated |= {(tp.target, name) for name in done}
        by_name = {p.name: p for p in tried}
        for v in found:
            index = by_name[v.check].kind in ("index", "unique", "pk")
            result.failures.append(
                SchemaFailure(
                    "index-data" if index else "check-data",
                    tp.target,
                    v.check,
                    by_name[v.check].sql,
                    v.error if index else checkeval.describe(v),
                    _hint_of(by_name[v.check]),
                )
            )


def _hint_of(post: Any) -> str:
    if post.kind == "check":
        return checkeval.HINT
    return checkeval.INDEX_HINT if checkeval.translated_index(post) else checkeval.KEY_HINT


def _views(plan: Plan, attempt: Any, result: TrialResult) -> None:
    """The views as the run builds them: one that fails is tried again after the others (it
    may select from a view created later); only what fails on the last round is reported."""
    pending = list(plan.views)
    while pending:
        quiet: list[SchemaFailure] = []
        left = [v for v in pending if not attempt("view", None, v.target, _view_sql(v), quiet)]
        if len(left) == len(pending):
            for v in left:
                failed: list[SchemaFailure] = []
                attempt("view", None, v.target, _view_sql(v), failed)
                for f in failed:  # why it was sent untranslated says more than "recreate it"
                    if v.note:
                        f.hint = f"{v.note}; or recreate the view by hand after the run"
                    result.failures.append(f)
            return
        pending = left


def _view_sql(v: Any) -> str:
    return f"CREATE VIEW {quote(v.target)} AS {v.sql}"


def _triggers(plan: Plan, created: set[str], attempt: Any, result: TrialResult) -> None:
    """Each trigger's function and trigger, each sent whole (PL/pgSQL bodies hold ``;``
    inside their quoting, so nothing is split); a trigger that was not translated fails the
    run, so it is a failure here too."""
    for t in plan.triggers:
        if t.error:
            result.failures.append(
                SchemaFailure(
                    "trigger",
                    t.table,
                    t.source,
                    t.sql,
                    f"not translated: {t.error}",
                    hint_for("trigger"),
                )
            )
            continue
        if not t.trigger_sql or t.table not in created:
            continue  # left out by the cast file, or its table failed (reported)
        if t.calls and not attempt("trigger", t.table, t.source, missing_check(t.calls)):
            continue  # PL/pgSQL compiles a call to a missing function: it fails when fired
        if t.function_sql and not attempt("trigger", t.table, t.function, t.function_sql):
            continue
        # each body statement analysed as it will be when the trigger fires (PL/pgSQL plans
        # it only then): a type PostgreSQL refuses would fail the app's first write
        if not all(attempt("trigger", t.table, t.source, probe) for probe in t.probes):
            continue
        attempt("trigger", t.table, t.target, t.trigger_sql)


def _jsonb_values(
    pg: psycopg.Connection, src: sqlite3.Connection, plan: Plan, result: TrialResult
) -> None:
    """Every text value of a jsonb column parsed by PostgreSQL itself (SQLite's json_valid
    accepts some it rejects, e.g. lone UTF-16 surrogates); duplicate object keys, which jsonb
    drops but the last, are a note."""
    for tp in plan.tables:
        for col in tp.columns:
            if col.pg_type != "jsonb":
                continue
            c = quote(col.source)
            cur = src.execute(f"SELECT {c} FROM {quote(tp.source)} WHERE typeof({c}) = 'text'")
            bad, first, dupes = 0, None, 0
            for fetched in fetch_batches(cur, 5000):
                batch = [r[0] for r in fetched]
                rows = pg.execute(
                    "SELECT v, emrops_jsonb_err(v) FROM unnest(%s::text[]) AS u(v) "
                    "WHERE emrops_jsonb_err(v) IS NOT NULL",
                    (batch,),
                ).fetchall()
                bad += len(rows)
                if rows and first is None:
                    first = rows[0]
                dupes += sum(_duplicate_keys(v) for v in batch)
            if bad and first is not None:
                result.failures.append(
                    SchemaFailure(
                        "jsonb",
                        tp.target,
                        col.target,
                        f"SELECT %s::jsonb  -- {bad} value(s) of {tp.source}.{col.source}",
                        f"{bad} value(s) do not parse as jsonb; first {first[0][:60]!r}: "
                        f"{first[1]}",
                        'add a cast rule type = "text" for the column',
                    )
                )
            if dupes:
                result.notes.append(
                    f"{tp.source}.{col.source}: {dupes} JSON value(s) repeat an object key; "
                    "jsonb keeps only the last"
                )


def _duplicate_keys(text: str) -> int:
    seen = [0]

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _v in items}) != len(items):
            seen[0] = 1
        return dict(items)

    try:
        json.loads(text, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return 0
    return seen[0]


def check_source_rows(
    conn: sqlite3.Connection,
    tables: list[Table],
    plan: Plan,
    failures: list[SchemaFailure],
    evaluated: set[tuple[str, str]] | None = None,
) -> list[str]:
    """Evaluate each CHECK that compiled on the target over the source rows (SQLite's
    expression; those in ``evaluated`` the target already judged); a violated one is a
    failure (the run's ALTER TABLE would fail on it). Returns the checks left to the run."""
    failed = {(f.table, f.name) for f in failures if f.kind in ("check", "check-data")}
    failed |= evaluated or set()
    by_source = {t.source: t for t in plan.tables}
    later: list[str] = []
    for table in tables:
        tp = by_source.get(table.name)
        if tp is None:
            continue
        for post in tp.post:
            if post.kind != "check" or post.source_expr is None:
                continue
            if (tp.target, post.name) in failed:
                continue
            chk = Check(post.name, post.source_expr)
            violated = _violations(conn, table, chk)
            if violated is None:
                later.append(f"{tp.target}: CHECK {post.name} ({chk.expr}) is checked at run")
            elif violated[0]:
                failures.append(
                    SchemaFailure(
                        "check-data",
                        tp.target,
                        post.name,
                        post.sql,
                        f"{violated[0]} source row(s) violate CHECK ({chk.expr}); first key "
                        f"{violated[1]}",
                        "fix those rows in the source or drop the CHECK; the run would "
                        "fail to add it",
                    )
                )
    return later


def fk_orphans(
    conn: sqlite3.Connection,
    tables: list[Table],
    plan: Plan,
    failures: list[SchemaFailure],
    notes: list[str],
) -> None:
    """Rows whose foreign key points to no row (SQLite enforces foreign keys only when asked
    to): each key they break is a failure, as the run would add it NOT VALID and exit 3."""
    by_source = {t.source: t for t in plan.tables}
    for table in tables:
        tp = by_source.get(table.name)
        if tp is None:
            continue
        fks = {p.fk_id: p for p in plan.fks if p.table == tp.target and p.fk_id is not None}
        if not fks:
            continue
        try:
            rows = conn.execute(f"PRAGMA foreign_key_check({quote(table.name)})").fetchall()
        except sqlite3.OperationalError:
            # "foreign key mismatch": another key of the table is named wrong (the plan skips
            # it); the keys the plan keeps are checked one by one instead
            rows = _orphans_each(conn, table, set(fks))
        found: dict[int, list[Any]] = {}
        for row in rows:  # (table, rowid, parent, fkid)
            found.setdefault(row[3], []).append(row)
        for fk_id, broken in found.items():
            post = fks.get(fk_id)
            if post is None:
                continue  # a key the plan skipped (its table or columns are missing)
            first = broken[0][1]
            failures.append(
                SchemaFailure(
                    "fk-data",
                    tp.target,
                    post.name,
                    post.sql,
                    f"{len(broken)} source row(s) whose foreign key points to no row in "
                    f"{broken[0][2]}; first "
                    + ("rowid " + str(first) if first is not None else "row (WITHOUT ROWID)"),
                    "fix or delete those rows in the source (PRAGMA foreign_key_check in "
                    "sqlite3 lists them), or run anyway: every row is copied, the key is "
                    "added NOT VALID and run exits 3",
                )
            )


def _orphans_each(conn: sqlite3.Connection, table: Table, ids: set[int]) -> list[tuple]:
    """PRAGMA foreign_key_check's rows (table, rowid, parent, fkid) for the keys ``ids``,
    by one anti-join each: a row whose key columns are all non-NULL and match no parent row."""
    rows: list[tuple] = []
    rowid = "NULL" if table.without_rowid else "c.rowid"
    for fk in table.foreign_keys:
        if fk.sqlite_id not in ids:
            continue
        present = " AND ".join(f"c.{quote(c)} IS NOT NULL" for c in fk.columns)
        match = " AND ".join(
            f"p.{quote(r)} = c.{quote(c)}" for c, r in zip(fk.columns, fk.ref_columns, strict=True)
        )
        sql = (
            f"SELECT {rowid} FROM {quote(table.name)} AS c WHERE {present} AND NOT EXISTS "
            f"(SELECT 1 FROM {quote(fk.ref_table)} AS p WHERE {match})"
        )
        rows += [(table.name, r[0], fk.ref_table, fk.sqlite_id) for r in conn.execute(sql)]
    return rows


def unique_collisions(
    conn: sqlite3.Connection, tables: list[Table], plan: Plan, failures: list[SchemaFailure]
) -> None:
    """Keys SQLite keeps apart only by storage class (1 and '1' in an untyped UNIQUE or
    PRIMARY KEY column) collide once a cast rule makes them one type: the run's unique index
    would fail, so the plan says so with the count."""
    by_source = {t.source: t for t in plan.tables}
    register_equal(conn)
    for table in tables:
        tp = by_source.get(table.name)
        if tp is None:
            continue
        # columns whose values are converted: grouped by what each value becomes, which is
        # what the target's index compares
        converted = {c.source: _equal_as(c) for c in tp.columns if _equal_as(c) is not None}
        for name, cols, where in _unique_keys(table, tp):
            if not set(converted) & set(cols):
                continue
            as_text = ", ".join(
                (converted.get(c) or "CAST({c} AS TEXT)").format(c=quote(c)) for c in cols
            )
            not_null = " AND ".join(f"{quote(c)} IS NOT NULL" for c in cols) + where
            try:
                row = conn.execute(
                    f"SELECT count(*) FROM (SELECT 1 FROM {quote(table.name)} WHERE {not_null} "
                    f"GROUP BY {as_text} HAVING count(*) > 1)"
                ).fetchone()
            except sqlite3.Error:
                continue
            if row and row[0]:
                failures.append(
                    SchemaFailure(
                        "unique-data",
                        tp.target,
                        name,
                        f"UNIQUE ({', '.join(cols)})",
                        f"{row[0]} key value(s) that SQLite keeps apart collide once converted "
                        "(1 and '1' or 'a' and x'61' made one type; two spellings of one "
                        "timestamp, UUID, time or JSON document)",
                        _collision_hint([converted.get(c) or "" for c in cols]),
                    )
                )


def _equal_as(c: Any) -> str | None:
    """SQL (with ``{c}``) of what a column's value is equal as in PostgreSQL, when that is
    not its SQLite value: the text or bytes of a converted value, and the canonical form of a
    timestamp, time, jsonb or UUID (two spellings of one instant are one key there); None for
    columns compared as they are."""
    kind = canon_kind(c.pg_type)
    if kind in ("ts", "time", "jsonb"):
        return f"emrops_equal_{kind}({{c}})"
    if kind == "uuid":
        return "lower(replace(CAST({c} AS TEXT), '-', ''))"
    if c.converter in ("bytea", "bytea_only"):
        return "CAST({c} AS BLOB)"  # text too: 'a' and x'61' meet
    if c.converter != "pass" and not c.fast:
        return "CAST({c} AS TEXT)"
    return None


def _collision_hint(equal_as: list[str]) -> str:
    hint = "make the values one type (one spelling) in the source"
    if any("emrops_equal" in e or "replace(" in e for e in equal_as):
        return hint + ', or cast the column to text (type = "text" keeps each spelling)'
    if any("AS BLOB" in e for e in equal_as):
        return hint
    return hint + ", or cast the column to bytea"


def _canonical_or_none(fn: Any) -> Any:
    def canon(v: Any) -> Any:
        try:
            return None if v is None else fn(v)
        except (ValueError, TypeError, ArithmeticError):
            return None  # not convertible: an anomaly of its own

    return canon


def register_equal(conn: sqlite3.Connection) -> None:
    for kind, pg_type in (("ts", "timestamptz"), ("time", "time"), ("jsonb", "jsonb")):
        fn = _canonical_or_none(canon_function(pg_type))
        conn.create_function(f"emrops_equal_{kind}", 1, fn, deterministic=True)


def _unique_keys(table: Table, tp: Any) -> list[tuple[str, list[str], str]]:
    """(name, columns, extra WHERE of a partial index) of each unique key over plain columns
    that PostgreSQL will enforce: UNIQUE indexes and constraints, and a primary key that is
    not the rowid."""
    keys = [
        (i.name, list(i.columns), f" AND ({i.where})" if i.where else "")
        for i in table.indexes
        if i.unique and i.origin != "pk" and all(i.columns)
    ]
    if table.pk and not table.rowid_alias:
        keys.append((f"{tp.target}_pkey", list(table.pk), ""))
    return keys


def _folded(table: Table, name: str) -> set[str]:
    """Columns a unique index named ``name`` compares under COLLATE NOCASE (indexed as
    lower(), see sql.index_element)."""
    for i in table.indexes:
        if i.name == name:
            return {
                c
                for c, e in zip(i.columns, i.elements, strict=False)
                if (m := NOCASE_ELEMENT.search(e)) and m.group(1).strip('"').upper() == "NOCASE"
            }
    return set()


def citext_collisions(
    src: sqlite3.Connection,
    tables: list[Table],
    plan: Plan,
    target_url: str,
    failures: list[SchemaFailure],
) -> None:
    """Unique keys over ``COLLATE NOCASE`` columns that become citext: SQLite's NOCASE folds
    ASCII letters only, citext folds every letter the target's locale knows ('é' = 'É'), so
    keys SQLite keeps apart can collide and the run's unique index would fail. Only rows
    with a non-ASCII character in such a column can collide anew; those are grouped by the
    target itself (its lower(), in a rolled-back temporary table)."""
    by_source = {t.source: t for t in plan.tables}
    checks = []
    for table in tables:
        tp = by_source.get(table.name)
        if tp is None:
            continue
        texty = {c.source for c in tp.columns if is_text(c.pg_type)}
        for name, cols, where in _unique_keys(table, tp):
            fold = citext_of(tp) | (_folded(table, name) & texty)
            if fold & set(cols):
                checks.append((table, tp, name, cols, [c for c in cols if c in fold], where))
    if not checks:
        return
    with journal.connect(target_url) as pg:
        try:
            for table, tp, name, cols, ci, where in checks:
                folded = ", ".join(
                    f"lower(c{i})" if c in ci else f"c{i}" for i, c in enumerate(cols)
                )
                defs = ", ".join(f"c{i} text" for i in range(len(cols)))
                pg.execute(f"CREATE TEMP TABLE emrops_ci ({defs}) ON COMMIT DROP")
                # a character outside ASCII takes more than one byte
                any_wide = " OR ".join(
                    f"length(CAST({quote(c)} AS BLOB)) <> length(CAST({quote(c)} AS TEXT))"
                    for c in ci
                )
                select = ", ".join(f"CAST({quote(c)} AS TEXT)" for c in cols)
                not_null = " AND ".join(f"{quote(c)} IS NOT NULL" for c in cols) + where
                cur = src.execute(
                    f"SELECT {select} FROM {quote(table.name)} WHERE {not_null} AND ({any_wide})"
                )
                with pg.cursor().copy("COPY emrops_ci FROM STDIN") as copy:
                    for batch in fetch_batches(cur, 5000):
                        for key in batch:
                            copy.write_row(key)
                row = pg.execute(
                    f"SELECT count(*), min(ex) FROM (SELECT min(c0) AS ex FROM emrops_ci "
                    f"GROUP BY {folded} HAVING count(*) > 1) AS d"
                ).fetchone()
                pg.execute("DROP TABLE emrops_ci")
                if row and row[0]:
                    failures.append(
                        SchemaFailure(
                            "unique-data",
                            tp.target,
                            name,
                            f"UNIQUE ({', '.join(cols)})",
                            f"{row[0]} key value(s) that SQLite's COLLATE NOCASE keeps apart "
                            f"(it folds ASCII letters only) are equal under citext (all "
                            f"letters), e.g. {row[1]!r} and its other-case twin",
                            f'add a cast rule type = "text" for {table.name}.{ci[0]} to keep '
                            "it case-sensitive, or merge those rows in the source"
                            if ci[0] in citext_of(tp)
                            else "merge those rows in the source (the index is built over "
                            "lower(), which folds every letter)",
                        )
                    )
        finally:
            pg.rollback()


def without_repeats(failures: list[SchemaFailure]) -> list[SchemaFailure]:
    """``failures`` less each index the target could not build (``index-data``) that a
    ``unique-data`` failure names already, with its more specific hint."""
    named = {(f.table, f.name) for f in failures if f.kind == "unique-data"}
    # a key over converted values, checked in SQLite too: "UNIQUE (a, b)" there
    keys = {
        (f.table, "(" + ", ".join(quote(c) for c in f.sql[8:-1].split(", ")) + ")")
        for f in failures
        if f.kind == "unique-data" and f.sql.startswith("UNIQUE (")
    }
    return [
        f
        for f in failures
        if f.kind != "index-data"
        or not (
            (f.table, f.name) in named or any(t == f.table and f.sql.endswith(k) for t, k in keys)
        )
    ]


def citext_of(tp: Any) -> set[str]:
    return {c.source for c in tp.columns if c.pg_type == "citext"}


def _violations(conn: sqlite3.Connection, table: Table, chk: Check) -> tuple[int, Any] | None:
    key = quote(rowid_name(table) or "rowid") if not table.without_rowid else quote(table.pk[0])
    try:
        row = conn.execute(
            f"SELECT count(*), min({key}) FROM {quote(table.name)} WHERE NOT ({chk.expr})"
        ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]), row[1]
