"""Online migration: change capture in the source, catch-up replay, cutover.

``run --online`` installs AFTER INSERT/UPDATE/DELETE triggers on every source table that logs
the primary key of each changed row into ``_emrops_changes`` (the only change emrops makes to
the source's schema; the app's own rows are never modified), then copies a snapshot while the
app keeps writing, and replays the captured keys: the row's current state is upserted by
primary key, or deleted when it is gone. ``cutover`` turns maintenance on, replays the rest,
verifies, switches the config to PostgreSQL, lifts maintenance there and removes the triggers.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.db.quoting import pg_text
from emrops.db.schema import emrops_control
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import CheckFailed, EmropsError, UsageError
from emrops.migrate import fallback, journal
from emrops.migrate.convert import CONVERT, ConversionError
from emrops.migrate.plan import Plan, TablePlan
from emrops.migrate.reflect import quote
from emrops.migrate.reload import ReloadCommand, run_reload
from emrops.migrate.verify import VerifyResult, verify

CHANGES = "_emrops_changes"
TRIGGER_PREFIX = "_emrops_cdc_"
MAINTENANCE_WAIT_S = 1.2  # sim instances poll the flag every 0.5 s


def _rw(path: Path) -> sqlite3.Connection:
    conn = open_sqlite(path, mode="rw", timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def capture_tables(tables: list[Any]) -> list[Any]:
    """Reflected tables that can be captured (they need a primary key to replay by), in a
    source that has the maintenance switch cutover turns on (EMRsim's ``emrops_control``):
    without it the run installed triggers in the app's database, exited 0, and cutover
    could only refuse ("no such table: emrops_control")."""
    if not any(t.name.lower() == emrops_control.name for t in tables):
        raise UsageError(
            f"--online needs the app's maintenance switch (table {emrops_control.name}, "
            "which EMRsim polls) to stop writes at cutover; this source has none",
            hint="migrate offline: stop the app (or its writers), then run without --online",
        )
    missing = [t.name for t in tables if not t.pk]
    if missing:
        raise UsageError(
            f"--online needs a primary key on every table; none on: {', '.join(missing)}",
            hint="migrate offline (stop the writers), or add primary keys first",
        )
    return tables


def install_capture(path: Path, tables: list[Any]) -> None:
    """Create the change table and the triggers (idempotent; one transaction)."""
    conn = _rw(path)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {CHANGES} (seq INTEGER PRIMARY KEY, "
            "tbl TEXT NOT NULL, pk TEXT NOT NULL)"
        )
        for n, t in enumerate(tables):
            name = t.name.replace("'", "''")

            def key(ref: str, t: Any = t) -> str:
                return "json_array(" + ", ".join(f"{ref}.{quote(c)}" for c in t.pk) + ")"

            for suffix, event, body in (
                ("i", "INSERT", f"VALUES ('{name}', {key('NEW')})"),
                ("d", "DELETE", f"VALUES ('{name}', {key('OLD')})"),
                ("u", "UPDATE", f"VALUES ('{name}', {key('OLD')}), ('{name}', {key('NEW')})"),
            ):
                conn.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {TRIGGER_PREFIX}{n}_{suffix} AFTER {event} ON "
                    f"{quote(t.name)} BEGIN INSERT INTO {CHANGES} (tbl, pk) {body}; END"
                )
        conn.execute("COMMIT")
    finally:
        conn.close()


def remove_capture(path: Path) -> list[str]:
    """Drop our triggers and change table from the source; returns what was dropped."""
    if not path.exists():
        return []
    conn = _rw(path)
    dropped: list[str] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name GLOB ?",
            (TRIGGER_PREFIX + "*",),
        ).fetchall():
            if name.startswith(TRIGGER_PREFIX):
                conn.execute(f"DROP TRIGGER IF EXISTS {quote(name)}")
                dropped.append(f"trigger {name}")
        if conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (CHANGES,)
        ).fetchone():
            conn.execute(f"DROP TABLE {CHANGES}")
            dropped.append(f"table {CHANGES}")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return dropped


def last_seq(path: Path) -> int:
    conn = open_sqlite(path)
    try:
        row = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {CHANGES}").fetchone()
        return int(row[0]) if row else 0
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def _upsert_sql(tp: TablePlan) -> str:
    cols = [quote(c.target) for c in tp.columns]
    pk = [quote(c.target) for c in tp.columns if c.source in tp.pk]
    rest = [c for c in cols if c not in pk]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest) if rest else "DO NOTHING"
    )
    # psycopg reads % as a placeholder: a name holding one is escaped (pg_text)
    return (
        pg_text(f"INSERT INTO {quote(tp.target)} ({', '.join(cols)}) VALUES ")
        + f"({', '.join(['%s'] * len(cols))})"
        + pg_text(f" ON CONFLICT ({', '.join(pk)}) {action}")
    )


def _convert_all(tp: TablePlan, values: list[Any]) -> list[Any]:
    out = []
    for c, v in zip(tp.columns, values, strict=True):
        out.append(None if v is None else CONVERT[c.converter](v))
    return out


def replay(source: Path, target_url: str, plan: Plan, since: int) -> tuple[int, int]:
    """Apply every change captured after ``since``; returns (new position, rows applied).
    Rows are applied in the order of their first change, each as its current state."""
    src = open_sqlite(source, timeout=30)
    by_source = {t.source: t for t in plan.tables}
    try:
        changes = src.execute(
            f"SELECT seq, tbl, pk FROM {CHANGES} WHERE seq > ? ORDER BY seq", (since,)
        ).fetchall()
        if not changes:
            return since, 0
        order: dict[tuple[str, str], None] = {}
        for _seq, tbl, pk in changes:
            order.setdefault((tbl, pk), None)
        applied = 0
        with journal.connect(target_url) as conn:
            # replayed rows are already what the source's triggers made of them: the
            # translated triggers stay off for the replay (in its transaction only)
            translated = [tr for tr in plan.triggers if not tr.error]
            for tr in translated:
                conn.execute(f"ALTER TABLE {quote(tr.table)} DISABLE TRIGGER {quote(tr.target)}")
            for tbl, pk_json in order:
                tp = by_source.get(tbl)
                if tp is None:
                    continue
                keys = json.loads(pk_json)
                cols = ", ".join(quote(c.source) for c in tp.columns)
                where = " AND ".join(f"{quote(k)} = ?" for k in tp.pk)
                row = src.execute(
                    f"SELECT {cols} FROM {quote(tp.source)} WHERE {where}", keys
                ).fetchone()
                try:
                    if row is not None:
                        conn.execute(_upsert_sql(tp), _convert_all(tp, list(row)))
                    else:
                        pk_cols = [c for c in tp.columns if c.source in tp.pk]
                        by_name = dict(zip(tp.pk, keys, strict=True))
                        pk_vals = [
                            CONVERT[c.converter](by_name[c.source])
                            if by_name[c.source] is not None
                            else None
                            for c in pk_cols
                        ]
                        # psycopg reads % as a placeholder: names are escaped (pg_text)
                        cond = " AND ".join(pg_text(quote(c.target)) + " = %s" for c in pk_cols)
                        conn.execute(
                            pg_text(f"DELETE FROM {quote(tp.target)} WHERE ") + cond, pk_vals
                        )
                except ConversionError as exc:
                    raise CheckFailed(
                        f"replay: table {tp.source}, key {keys}: {exc}",
                        hint="add a cast rule for the column, then `migrate-db run --resume "
                        "--online`",
                    ) from None
                applied += 1
            for t in plan.tables:  # identities past anything the app inserted meanwhile
                for obj in t.post:
                    if obj.kind == "identity":
                        conn.execute(obj.sql)
            for tr in translated:
                conn.execute(f"ALTER TABLE {quote(tr.table)} ENABLE TRIGGER {quote(tr.target)}")
            position = int(changes[-1][0])
            journal.put(conn, "online", "online", "replayed", rows=position)
            conn.commit()
        return position, applied
    finally:
        src.close()


@dataclass
class CutoverResult:
    replayed_rows: int
    verify: VerifyResult
    config_file: str
    db_url: str
    reload: str | None
    downtime_ms: int
    removed_from_source: list[str]
    warnings: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def _reload_yourself(config_file: Path) -> str:
    return (
        f"the app still holds its SQLite connection: reload or restart it now so it reads "
        f"db_url from {config_file} (`sim serve` reloads on SIGHUP: kill -HUP <pid>); writes "
        f"are accepted on PostgreSQL already and refused on SQLite until then "
        f"(pass --reload-cmd next time to have emrops do it)"
    )


def config_url(target_url: str) -> str:
    """The target URL as cutover writes it into the config: without its password (secrets
    stay in the environment). ``URL.set(password=None)`` keeps it (None means "unchanged"),
    and it went into the config file in clear."""
    from emrops.db.engine import parse_db_url

    url = parse_db_url(target_url).url
    return str(url._replace(password=None).render_as_string(hide_password=False))


def write_db_url(config_file: Path, url: str) -> None:
    """Set the top-level ``db_url`` in a TOML config file (creating the file if needed)."""
    text = config_file.read_text() if config_file.exists() else ""
    line = f"db_url = {json.dumps(url)}"  # a TOML basic string, quotes and backslashes escaped
    lines = text.splitlines()
    for i, existing in enumerate(lines):
        if existing.strip().startswith("["):
            break
        if re.match(r"\s*db_url\s*=", existing):
            lines[i] = line
            atomic.write_text(config_file, "\n".join(lines) + "\n", mode=0o600)
            return
    atomic.write_text(config_file, "\n".join([line, *lines]) + "\n", mode=0o600)


def cutover(
    source_url: str,
    target_url: str,
    plan: Plan,
    since: int,
    *,
    config_file: Path,
    reload_cmd: ReloadCommand | None,
    env_db_url: str | None,
    jobs: int,
    phase: Callable[[str], None] = lambda _p: None,
) -> CutoverResult:
    """Maintenance on, last replay, verify, switch config, reload, maintenance off on PG."""
    from emrops.db.control import set_maintenance
    from emrops.db.engine import create_engine, parse_db_url

    source = parse_db_url(source_url).sqlite_path
    assert source is not None
    src_engine = create_engine(source_url, create=False)
    pg_engine = create_engine(target_url)
    warnings: list[str] = []
    try:
        phase("maintenance on")
        started = time.monotonic()
        try:
            set_maintenance(src_engine, True, "migrating to PostgreSQL")
        except EmropsError as exc:
            if "no such table" not in exc.message:
                raise
            raise UsageError(
                f"cannot switch the app to maintenance mode: {exc.message}",
                hint="cutover needs the EMRsim control table (emrops_control) in the source",
            ) from None
        time.sleep(MAINTENANCE_WAIT_S)  # every instance has seen the flag: no write in flight
        phase("replaying the last changes")
        _pos, applied = replay(source, target_url, plan, since)
        phase("verifying")
        with journal.connect(target_url, autocommit=True) as conn:
            entries = journal.read(conn)
        result = verify(plan, target_url, entries, source=source, jobs=jobs)
        if not result.ok:
            set_maintenance(src_engine, False)
            raise CheckFailed(
                "cutover aborted, still on SQLite (maintenance lifted): "
                + "; ".join(result.problems[:3]),
                hint="fix the difference, then run cutover again",
            )
        phase("switching the config")
        clean = config_url(target_url)
        write_db_url(config_file, clean)
        if env_db_url:
            warnings.append(
                "EMROPS_DB_URL is set in the environment and overrides the config file: "
                "change it too, or the app keeps using SQLite"
            )
        reload_out = None
        next_steps: list[str] = []
        if reload_cmd:
            phase("reloading the app")
            outcome = run_reload(reload_cmd)
            reload_out = outcome.detail
            if not outcome.ok:
                warnings.append(f"reload command failed ({outcome.detail})")
                next_steps.append(_reload_yourself(config_file))
        else:
            next_steps.append(_reload_yourself(config_file))
        phase("maintenance off on PostgreSQL")
        with journal.connect(target_url) as conn:  # capture writes on PG, for rollback
            fallback.install_pg_capture(conn, plan)
            conn.commit()
        set_maintenance(pg_engine, False)
        downtime_ms = int((time.monotonic() - started) * 1000)
        removed = remove_capture(source)
        with journal.connect(target_url) as conn:
            journal.put(
                conn, "online", "online", "cut-over", rows=_pos, detail={"downtime_ms": downtime_ms}
            )
            journal.put(conn, "run", "run", "cut-over")
            conn.commit()
        return CutoverResult(
            applied,
            result,
            str(config_file),
            clean,
            reload_out,
            downtime_ms,
            removed,
            warnings,
            next_steps,
        )
    finally:
        src_engine.dispose()
        pg_engine.dispose()
