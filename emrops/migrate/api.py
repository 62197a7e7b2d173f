"""The functions the CLI calls: options in, plain dicts out (rendered by emrops.cli.migrate)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.db.urls import sqlite_db_url
from emrops.machine import default_jobs
from emrops.migrate import journal, start
from emrops.migrate import run as runner
from emrops.migrate import status as run_status
from emrops.migrate.casts import load_casts
from emrops.migrate.planner import build_plan, open_source
from emrops.migrate.reload import ReloadCommand

# measured copy rate on a 2-core machine (psycopg 3 text COPY), for the plan's ETA
ROWS_PER_SECOND = 250_000


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return obj


def make_plan(
    source: str,
    target: str,
    cast: Path | None,
    emit_sql: Path | None,
    *,
    state_dir: Path | None = None,
    backup_store: str | None = None,
    settings: Any = None,
) -> dict[str, Any]:
    """The plan as a dict, plus a pre-flight look at the target (reachable, tables in the way,
    every statement tried) and the pre-migration backup `run` would take or reuse."""
    from emrops.migrate import rowsize, trial
    from emrops.migrate.reflect import reflect

    casts = load_casts(cast)
    # the target first: a plan that cannot be tried there is no promise (exit 1 with a hint)
    with journal.connect(target, autocommit=True) as pg:
        journal.require_utf8(pg)
        journal.require_writable(pg)
    conn = open_source(start.source_path(source))
    try:
        plan = build_plan(conn, casts)
        tried = trial.try_plan(plan, target, plan.extensions, conn)
        tables = reflect(conn).tables
        tried.checked_at_run = trial.check_source_rows(
            conn, tables, plan, tried.failures, tried.evaluated
        )
        trial.unique_collisions(conn, tables, plan, tried.failures)
        trial.fk_orphans(conn, tables, plan, tried.failures, tried.notes)
        trial.citext_collisions(conn, tables, plan, target, tried.failures)
        tried.failures = trial.without_repeats(tried.failures)
        rowsize.oversized_rows(conn, tables, plan, tried.failures)
        rowsize.oversized_index_keys(conn, tables, plan, tried.failures)
    finally:
        conn.close()
    if emit_sql is not None:
        atomic.write_text(emit_sql, plan.ddl(), mode=0o600)
    data = plan.to_dict()
    data["rows"] = plan.total_rows
    data["eta_seconds"] = round(plan.total_rows / ROWS_PER_SECOND, 1)
    data["schema_failures"] = [dataclasses.asdict(f) for f in tried.failures]
    data["checked_at_run"] = tried.checked_at_run
    data["notes"] += tried.notes
    data["statements_tried"] = tried.statements
    data["ok"] = not plan.anomalies and not tried.failures
    with journal.connect(target, autocommit=True) as pg:
        journal.check_schema(pg)  # where run creates its tables (the trial used a scratch one)
        in_the_way = start.existing_tables(pg, [t.target for t in plan.tables] + [journal.JOURNAL])
    data["target_conflicts"] = in_the_way
    if state_dir is not None:
        from emrops.migrate import prebackup

        data["backup"] = prebackup.estimate(
            state_dir, start.source_path(source), backup_store, settings
        )
    if in_the_way and journal.JOURNAL in in_the_way:  # an emrops run's: --resume goes on
        data["notes"].append(
            f"the target already has tables {', '.join(in_the_way)}: `run` would refuse it "
            "(use --resume to continue a run, or rollback)"
        )
    elif in_the_way:  # someone else's: run would refuse, so plan does not promise it
        data["ok"] = False
    return data


def run(
    source: str,
    target: str,
    *,
    state_dir: Path,
    backup_store: str | None,
    settings: Any,
    online: bool = False,
    jobs: int,
    resume: bool,
    cast: Path | None,
    on_error: str,
    verify: bool,
    reject_file: Path | None,
    phase: Callable[[str], None],
    rows: Callable[[str, int, int], None],
    tables: Callable[[list[tuple[str, int]]], None],
) -> dict[str, Any]:
    opts = runner.RunOptions(
        source,
        target,
        state_dir,
        jobs=jobs,
        resume=resume,
        cast=cast,
        on_error=on_error,
        verify=verify,
        reject_file=reject_file,
        backup_store=backup_store,
        settings=settings,
        online=online,
    )
    result = runner.run_migration(opts, runner.Hooks(phase=phase, rows=rows, tables=tables))
    data = dataclasses.asdict(result)
    data["ok"] = result.ok
    return data


def verify(source: str, target: str) -> dict[str, Any]:
    result = run_status.verify_target(source, target)
    return {
        "tables": [_plain(t) for t in result.tables],
        "problems": result.problems,
        "ok": result.ok,
    }


def status(target: str) -> dict[str, Any]:
    return run_status.status(target)


def _source(source: str | None) -> Path | None:
    return start.source_path(source) if source else None


def rollback_plan(target: str, source: str | None = None) -> dict[str, Any]:
    from emrops.migrate import rollback as rb  # (and its online/fallback parts) only when used

    rp = rb.plan_rollback(target, _source(source))
    return {**dataclasses.asdict(rp), "empty": rp.empty}


def rollback(
    target: str,
    source: str | None = None,
    *,
    config_file: Path | None = None,
    reload_cmd: ReloadCommand | None = None,
    settings: Any = None,
) -> list[str]:
    from emrops.migrate import rollback as rb

    return rb.execute_rollback(
        target,
        rb.plan_rollback(target, _source(source)),
        config_file=config_file,
        reload_cmd=reload_cmd,
        settings=settings,
    )


def cutover(
    source: str,
    target: str,
    *,
    config_file: Path,
    reload_cmd: ReloadCommand | None,
    env_db_url: str | None,
    phase: Callable[[str], None],
    settings: Any = None,
) -> dict[str, Any]:
    from emrops.migrate import online

    plan, entries = run_status.load_plan(target)
    run = entries["run"]
    if run.state != "online":
        from emrops.errors import UsageError

        raise UsageError(
            f"cutover needs a finished `run --online`; the journal says {run.state!r}",
            hint="run `emrops migrate-db run --online --from ... --to ...` first",
        )
    since = entries["online"].rows if "online" in entries else 0
    result = online.cutover(
        # the file's URL: --from may be the bare path `run --online` took
        sqlite_db_url(start.source_path(source)),
        target,
        plan,
        int(since or 0),
        config_file=config_file,
        reload_cmd=reload_cmd,
        env_db_url=env_db_url,
        jobs=default_jobs(),
        phase=phase,
    )
    data = dataclasses.asdict(result)
    data["verify"]["ok"] = result.verify.ok
    if run.detail.get("backup_id") and run.detail.get("backup_store"):
        from emrops.migrate.rollback import unpin_backup

        # the migration is settled: the pre-migration backup need not outlive rotation
        data["backup"] = unpin_backup(run.detail["backup_store"], settings, run.detail["backup_id"])
    return data
