"""Going back after cutover: PostgreSQL-side change capture and its replay into SQLite.

At cutover, triggers on every migrated table log the primary key of each changed row into
``emrops_changes_pg``. Rollback after cutover turns maintenance on (on PostgreSQL, where the app
now writes), replays those rows into the SQLite file in their SQLite representation (upsert by
primary key, or delete), points the config back to SQLite, reloads the app and lifts
maintenance there; then the PostgreSQL objects of the run are dropped as in any rollback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as dt_time
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from emrops.db.quoting import pg_text
from emrops.db.sqlite_file import open_sqlite
from emrops.db.urls import sqlite_db_url
from emrops.migrate import journal
from emrops.migrate.convert import epoch_number
from emrops.migrate.plan import ColumnPlan, Plan, TablePlan
from emrops.migrate.reflect import quote
from emrops.migrate.reload import ReloadCommand, run_reload

CHANGES_PG = "emrops_changes_pg"


def install_pg_capture(conn: psycopg.Connection, plan: Plan) -> None:
    """Change table + one trigger function and trigger per table (idempotent)."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {CHANGES_PG} (seq bigserial PRIMARY KEY, tbl text NOT NULL, "
        "pk jsonb NOT NULL)"
    )
    for n, tp in enumerate(plan.tables):
        pk = [c for c in tp.columns if c.source in tp.pk]
        if not pk:
            continue
        name = tp.source.replace("'", "''")

        def arr(ref: str, pk: list[ColumnPlan] = pk) -> str:
            return "jsonb_build_array(" + ", ".join(f"{ref}.{quote(c.target)}" for c in pk) + ")"

        conn.execute(
            f"CREATE OR REPLACE FUNCTION emrops_cdc_{n}() RETURNS trigger LANGUAGE plpgsql AS $f$ "
            f"BEGIN IF TG_OP <> 'INSERT' THEN INSERT INTO {CHANGES_PG} (tbl, pk) VALUES "
            f"('{name}', {arr('OLD')}); END IF; IF TG_OP <> 'DELETE' THEN INSERT INTO "
            f"{CHANGES_PG} (tbl, pk) VALUES ('{name}', {arr('NEW')}); END IF; RETURN NULL; END "
            "$f$"
        )
        conn.execute(f"DROP TRIGGER IF EXISTS emrops_cdc ON {quote(tp.target)}")
        conn.execute(
            f"CREATE TRIGGER emrops_cdc AFTER INSERT OR UPDATE OR DELETE ON {quote(tp.target)} "
            f"FOR EACH ROW EXECUTE FUNCTION emrops_cdc_{n}()"
        )


def remove_pg_capture(conn: psycopg.Connection, plan: Plan) -> None:
    for n, tp in enumerate(plan.tables):
        conn.execute(f"DROP TRIGGER IF EXISTS emrops_cdc ON {quote(tp.target)}")
        conn.execute(f"DROP FUNCTION IF EXISTS emrops_cdc_{n}()")
    conn.execute(f"DROP TABLE IF EXISTS {CHANGES_PG}")


def _to_sqlite(c: ColumnPlan) -> Callable[[Any], Any]:
    """PostgreSQL value (as psycopg returns it) -> the value SQLite held for this column."""
    base = c.pg_type.split("(")[0]
    if c.converter.startswith("ts_epoch_"):
        unit = c.converter[len("ts_epoch_") :]
        return lambda v: epoch_number(unit, v)
    if base == "timestamptz":  # naive UTC text with microseconds, as SQLAlchemy writes it
        return lambda v: v.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    if base == "boolean":
        return lambda v: 1 if v else 0
    if base == "jsonb":
        return lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    if base == "uuid":
        return (lambda v: v.hex) if "32" in c.declared else str
    if base == "numeric":
        return lambda v: int(v) if v == v.to_integral_value() and "," not in c.pg_type else float(v)
    if base in ("date", "time"):  # time: HH:MM:SS[.ffffff], as SQLite's time() writes it
        return lambda v: v.isoformat()
    return lambda v: bytes(v) if isinstance(v, memoryview) else v


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal | datetime | date | dt_time | uuid.UUID):
        return str(v)
    return v


def replay_to_sqlite(target_url: str, source: Path, plan: Plan) -> int:
    """Apply every change captured on PostgreSQL to the SQLite file; returns rows applied."""
    by_source = {t.source: t for t in plan.tables}
    applied = 0
    dst = open_sqlite(source, mode="rw", timeout=30, isolation_level=None)
    try:
        with journal.connect(target_url, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass(%s)", (CHANGES_PG,)).fetchone()
            if not exists or not exists[0]:
                return 0
            changes = conn.execute(f"SELECT tbl, pk::text FROM {CHANGES_PG} ORDER BY seq")
            order: dict[tuple[str, str], None] = {}
            for tbl, pk in changes:
                order.setdefault((tbl, pk), None)
            dst.execute("BEGIN IMMEDIATE")
            for tbl, pk_json in order:
                tp: TablePlan | None = by_source.get(tbl)
                if tp is None:
                    continue
                keys = json.loads(pk_json)
                pk_cols = [c for c in tp.columns if c.source in tp.pk]
                # psycopg reads % as a placeholder: names are escaped (pg_text)
                cond = " AND ".join(pg_text(quote(c.target)) + " = %s" for c in pk_cols)
                select = f"SELECT {', '.join(quote(c.target) for c in tp.columns)} FROM "
                row = conn.execute(
                    pg_text(f"{select}{quote(tp.target)} WHERE ") + cond, keys
                ).fetchone()
                src_pk = [
                    _to_sqlite(c)(k) if k is not None else None
                    for c, k in zip(pk_cols, _typed(conn, tp, pk_cols, keys), strict=True)
                ]
                where = " AND ".join(f"{quote(c.source)} = ?" for c in pk_cols)
                if row is None:
                    dst.execute(f"DELETE FROM {quote(tp.source)} WHERE {where}", src_pk)
                else:
                    values = [
                        None if v is None else _to_sqlite(c)(v)
                        for c, v in zip(tp.columns, row, strict=True)
                    ]
                    cols = [quote(c.source) for c in tp.columns]
                    rest = [
                        q for q, c in zip(cols, tp.columns, strict=True) if c.source not in tp.pk
                    ]
                    action = (
                        "DO UPDATE SET " + ", ".join(f"{q} = excluded.{q}" for q in rest)
                        if rest
                        else "DO NOTHING"
                    )
                    dst.execute(
                        f"INSERT INTO {quote(tp.source)} ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))}) ON CONFLICT "
                        f"({', '.join(quote(c.source) for c in pk_cols)}) {action}",
                        values,
                    )
                applied += 1
            dst.execute("COMMIT")
    except BaseException:
        if dst.in_transaction:
            dst.execute("ROLLBACK")
        raise
    finally:
        dst.close()
    return applied


def _typed(
    conn: psycopg.Connection, tp: TablePlan, pk_cols: list[ColumnPlan], keys: list[Any]
) -> list[Any]:
    """JSON key values back to typed PostgreSQL values (timestamps, uuids) via a cast."""
    if all(c.pg_type.split("(")[0] in ("bigint", "text", "varchar") for c in pk_cols):
        return keys
    casts = ", ".join(f"%s::{c.pg_type}" for c in pk_cols)
    row = conn.execute(f"SELECT {casts}", [_plain(k) for k in keys]).fetchone()
    return list(row) if row else keys


def rollback_after_cutover(
    target_url: str,
    plan: Plan,
    source: Path,
    *,
    config_file: Path,
    reload_cmd: ReloadCommand | None,
    wait_s: float,
) -> tuple[int, list[str]]:
    """Maintenance on PostgreSQL, replay its writes into SQLite, config back to SQLite, reload,
    maintenance off on SQLite. Returns (rows replayed, warnings). Safe to repeat after a crash:
    the replay is idempotent and the PostgreSQL side is only dropped afterwards."""
    import time

    from emrops.db.control import set_maintenance
    from emrops.db.engine import create_engine
    from emrops.migrate.online import write_db_url

    warnings: list[str] = []
    pg_engine = create_engine(target_url)
    src_engine = create_engine(sqlite_db_url(source), create=False)
    try:
        set_maintenance(pg_engine, True, "moving back to SQLite")
        time.sleep(wait_s)
        applied = replay_to_sqlite(target_url, source, plan)
        write_db_url(config_file, sqlite_db_url(source))
        if reload_cmd:
            outcome = run_reload(reload_cmd)
            if not outcome.ok:
                warnings.append(f"reload command failed ({outcome.detail})")
        else:
            warnings.append(
                f"no --reload-cmd: reload or restart the app now so it reads db_url from "
                f"{config_file} (writes are refused on PostgreSQL until then)"
            )
        set_maintenance(src_engine, False)
    finally:
        pg_engine.dispose()
        src_engine.dispose()
    with journal.connect(target_url) as conn:
        remove_pg_capture(conn, plan)
        conn.commit()
    return applied, warnings
