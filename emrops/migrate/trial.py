"""``plan``'s trial on the target: every statement the run would execute, tried for real.

All the DDL of a plan (tables with their defaults, keys, UNIQUE and CHECK constraints,
indexes, identities, foreign keys, views) runs in a scratch schema inside one transaction
that is always rolled back, so nothing is left on the target and what is already there is
not in the way. Each statement runs under a savepoint: one failure does not hide the next, and
each is reported with the SQL and PostgreSQL's own message. A plan whose trial is clean will
not fail on schema during ``run``.

CHECK constraints that compile are then evaluated over the source rows (SQLite's expression on
SQLite's values; a CHECK is false only when the expression is false, NULL passes in both
engines), since a row that violates one makes the run's ALTER TABLE fail. Those that cannot be
evaluated there are listed as checked at run.

Privileges it needs on the target: CONNECT, CREATE on the database (the scratch schema) and
whatever the DDL itself needs (the same as ``run``; CREATE EXTENSION citext when a column
becomes citext, which PostgreSQL 13+ lets a database owner do for a trusted extension).
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import psycopg

from emrops.migrate import journal
from emrops.migrate.plan import Plan
from emrops.migrate.reflect import Check, Table, quote


@dataclass
class SchemaFailure:
    kind: str  # table, pk, unique, check, index, identity, fk, view, extension, check-data
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


def pg_message(exc: psycopg.Error) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return (primary or str(exc).strip().splitlines()[0]).strip()


def hint_for(kind: str) -> str:
    return {
        "table": "a column type or default PostgreSQL refuses: add a cast rule for the column "
        '(type = "..." or default = "...")',
        "check": "the CHECK uses something PostgreSQL lacks: rewrite it after the run, or drop "
        "it from the source schema",
        "index": "an index expression PostgreSQL refuses: recreate it by hand after the run",
        "view": "the view SQL does not compile on PostgreSQL: recreate it by hand after the run",
        "extension": "ask the database owner to run CREATE EXTENSION citext, or add a cast rule "
        'type = "text" for the column',
    }.get(kind, "see PostgreSQL's message; a cast rule may change the column's type")


def try_plan(plan: Plan, target_url: str, extensions: list[str] | None = None) -> TrialResult:
    """Run every DDL statement of ``plan`` on the target in a rolled-back transaction."""
    result = TrialResult()
    scratch = f"emrops_plan_{secrets.token_hex(6)}"
    with journal.connect(target_url) as conn:
        try:
            conn.execute(f"CREATE SCHEMA {quote(scratch)}")
            conn.execute(f"SET LOCAL search_path TO {quote(scratch)}, public")

            def attempt(kind: str, table: str | None, name: str, sql: str) -> bool:
                result.statements += 1
                try:
                    with conn.transaction():  # a savepoint inside the outer transaction
                        conn.execute(sql)
                    return True
                except psycopg.Error as exc:
                    result.failures.append(
                        SchemaFailure(kind, table, name, sql, pg_message(exc), hint_for(kind))
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
            for v in plan.views:
                attempt("view", None, v.target, f"CREATE VIEW {quote(v.target)} AS {v.sql}")
        finally:
            conn.rollback()
    return result


def check_source_rows(
    conn: sqlite3.Connection,
    tables: list[Table],
    plan: Plan,
    failures: list[SchemaFailure],
) -> list[str]:
    """Evaluate each CHECK that compiled on the target over the source rows; a violated one is
    a failure (the run's ALTER TABLE would fail on it). Returns the checks left to the run."""
    failed = {(f.table, f.name) for f in failures if f.kind == "check"}
    by_source = {t.source: t for t in plan.tables}
    later: list[str] = []
    for table in tables:
        tp = by_source.get(table.name)
        if tp is None:
            continue
        posts = [p for p in tp.post if p.kind == "check"]
        for chk, post in zip(table.checks, posts, strict=False):
            if (tp.target, post.name) in failed:
                continue
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
                        f"{violated[0]} source row(s) violate CHECK ({chk.expr}); first rowid "
                        f"{violated[1]}",
                        "fix those rows in the source or drop the CHECK; the run would "
                        "fail to add it",
                    )
                )
    return later


def _violations(conn: sqlite3.Connection, table: Table, chk: Check) -> tuple[int, Any] | None:
    key = "rowid" if not table.without_rowid else quote(table.pk[0]) if table.pk else "NULL"
    try:
        row = conn.execute(
            f"SELECT count(*), min({key}) FROM {quote(table.name)} WHERE NOT ({chk.expr})"
        ).fetchone()
    except sqlite3.Error:
        return None
    return int(row[0]), row[1]
