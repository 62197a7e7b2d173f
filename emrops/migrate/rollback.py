"""``migrate-db rollback``: remove exactly what a run created, from its journal.

In the target: views, then tables (in one DROP, so foreign keys between them do not matter),
then the journal, all in one transaction: a crash leaves either everything or nothing. In the
source (online runs): the change-capture triggers and change table, nothing else. With no
journal there is nothing of ours to remove, so running it again is a no-op. The pre-migration
snapshot and the pinned backup are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from emrops.db.sqlite_file import open_sqlite
from emrops.errors import EmropsError
from emrops.migrate import fallback, journal, online
from emrops.migrate.plan import Plan
from emrops.migrate.reflect import quote
from emrops.migrate.reload import ReloadCommand
from emrops.migrate.status import refuse_if_running


@dataclass
class RollbackPlan:
    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    functions: list[str] = field(default_factory=list)  # trigger functions (dropped with
    # their tables' triggers gone)
    journal: bool = False
    snapshot: str | None = None
    source_capture: str | None = None  # source file whose triggers go (online runs)
    after_cutover: str | None = None  # SQLite file the PostgreSQL writes are replayed into
    extensions: list[str] = field(default_factory=list)  # created by the run (citext)
    backup_id: str | None = None  # the pinned pre-migration backup, unpinned
    backup_store: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.tables or self.views or self.journal or self.source_capture)


def plan_rollback(target: str, source: Path | None = None) -> RollbackPlan:
    """What rollback would remove. ``source`` also cleans change capture left in a source file
    by an online run that crashed before its journal existed."""
    capture = str(source) if source is not None and _has_capture(source) else None
    with journal.connect(target, autocommit=True) as conn:
        if not journal.exists(conn):
            return RollbackPlan(source_capture=capture)
        entries = journal.read(conn)
        present = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                "current_schema()"
            )
        }
    run = entries.get("run")
    if run is not None:
        refuse_if_running(run.detail, "a rollback")
    after_cutover = run is not None and run.state == "cut-over"
    plan = Plan.from_dict(run.detail["plan"]) if run and "plan" in run.detail else None
    tables = [e.item.split(":", 1)[1] for e in entries.values() if e.kind == "table"]
    views = [e.item.split(":", 1)[1] for e in entries.values() if e.kind == "view"]
    if plan is not None:  # views are created OR REPLACE, so check each planned one
        views = [v.target for v in plan.views if v.target in present or v.target in views]
    functions: list[str] = []
    if plan is not None and plan.triggers:
        with journal.connect(target, autocommit=True) as conn:
            existing = {
                r[0]
                for r in conn.execute(
                    "SELECT proname FROM pg_proc "
                    "WHERE pronamespace = current_schema()::regnamespace"
                )
            }
        built = {  # only the functions this run created (with their trigger, atomically)
            e.item for e in entries.values() if e.state == "done" and ":trigger:" in e.item
        }
        functions = [
            t.function
            for t in plan.triggers
            if f"object:{t.table}:trigger:{t.target}" in built and t.function in existing
        ]
    if run is not None and run.detail.get("online") and run.detail.get("source_path"):
        path = Path(run.detail["source_path"])
        if _has_capture(path):
            capture = str(path)
    return RollbackPlan(
        tables=[t for t in tables if t in present],
        views=[v for v in views if v in present],
        functions=functions,
        journal=True,
        snapshot=run.detail.get("snapshot") if run else None,
        source_capture=capture,
        after_cutover=run.detail.get("source_path") if after_cutover and run else None,
        extensions=list(run.detail.get("created_extensions") or []) if run else [],
        backup_id=run.detail.get("backup_id") if run else None,
        backup_store=run.detail.get("backup_store") if run else None,
    )


def _has_capture(path: Path) -> bool:
    if not path.exists():
        return False
    import sqlite3

    conn = open_sqlite(path)
    try:
        row = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = ? OR name GLOB ?",
            (online.CHANGES, online.TRIGGER_PREFIX + "*"),
        ).fetchone()
        return bool(row and row[0])
    except sqlite3.DatabaseError:
        return False
    finally:
        conn.close()


def execute_rollback(
    target: str,
    rp: RollbackPlan,
    *,
    config_file: Path | None = None,
    reload_cmd: ReloadCommand | None = None,
    settings: Any = None,
) -> list[str]:
    """Remove the planned objects and unpin the pre-migration backup (the migration is
    abandoned and the source was never written); returns what was done outside the target.
    After cutover, first replay the writes made on PostgreSQL into SQLite and point the
    config back to it."""
    done: list[str] = []
    if rp.after_cutover:
        if config_file is None:
            raise EmropsError("rollback after cutover needs the config file to switch back")
        with journal.connect(target, autocommit=True) as conn:
            run = journal.read(conn)["run"]
        plan = Plan.from_dict(run.detail["plan"])
        applied, warnings = fallback.rollback_after_cutover(
            target,
            plan,
            Path(rp.after_cutover),
            config_file=config_file,
            reload_cmd=reload_cmd,
            wait_s=online.MAINTENANCE_WAIT_S,
        )
        done.append(f"replayed {applied} row(s) written on PostgreSQL into {rp.after_cutover}")
        done.append(f"db_url in {config_file} points to sqlite:///{rp.after_cutover} again")
        done += [f"warning: {w}" for w in warnings]
    if rp.tables or rp.views or rp.journal:
        with journal.connect(target) as conn:
            for v in reversed(rp.views):
                conn.execute(f"DROP VIEW IF EXISTS {quote(v)}")
            if rp.tables:
                conn.execute("DROP TABLE IF EXISTS " + ", ".join(quote(t) for t in rp.tables))
            for f in rp.functions:
                conn.execute(f"DROP FUNCTION IF EXISTS {quote(f)}()")
            conn.execute(f"DROP TABLE IF EXISTS {journal.JOURNAL}")
            for ext in rp.extensions:
                try:
                    with conn.transaction():  # kept when something else now uses it
                        conn.execute(f"DROP EXTENSION IF EXISTS {quote(ext)}")
                except psycopg.Error:
                    done.append(f"extension {ext} kept: other objects use it")
            conn.commit()
    if rp.source_capture:
        done += online.remove_capture(Path(rp.source_capture))
    if rp.backup_id and rp.backup_store:
        done.append(unpin_backup(rp.backup_store, settings, rp.backup_id))
    return done


def unpin_backup(store: str, settings: Any, backup_id: str) -> str:
    """Unpin the pre-migration backup; a line saying what happened (never raises: the
    rollback or cutover it follows has succeeded)."""
    from emrops.migrate import prebackup

    try:
        if prebackup.unpin(store, settings, backup_id):
            return f"pre-migration backup {backup_id} unpinned (rotation may remove it now)"
        return f"pre-migration backup {backup_id} is no longer in the store"
    except (EmropsError, OSError) as exc:
        return f"pre-migration backup {backup_id} left pinned: {exc}"
