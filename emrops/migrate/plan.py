"""A migration plan as data: the tables (columns, CREATE TABLE, what is built after the
copy), views, triggers, foreign keys, renames, anomalies and notes, and the DDL script.

The plan is plain data (JSON-serialisable): ``run`` stores it in the target's journal so that
``verify`` and ``rollback`` later use exactly the decisions the copy used. It is built by
planner.py (tables and columns in columns.py, what is built after the copy in objects.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from emrops.migrate.reflect import quote

PLAN_VERSION = 1


def is_text(pg_type: str) -> bool:
    """text or varchar(n): the types a COLLATE NOCASE column or key may become citext from."""
    return pg_type == "text" or pg_type.startswith("varchar(")


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
    sequence: str | None = None  # the identity's sequence, when not PostgreSQL's own choice
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
    fk_id: int | None = None  # a foreign key's SQLite id (plan looks for rows it would orphan)


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
    calls: list[str] = field(default_factory=list)  # functions sqlglot does not know (checked)
    probes: list[str] = field(default_factory=list)  # EXPLAIN of each body statement (checked)


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
