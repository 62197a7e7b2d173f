"""The scheduled jobs: backup, verify (latest), rotate and the restore drill.

Each job calls the same core functions as the one-shot ``emrops backup`` commands, so it takes
the same store lock (a job meeting a running one-shot command gets Busy, exit 75, and records
``busy``). :func:`execute` wraps a job run: claim the tick (PostgreSQL), run, record the status
JSON and Prometheus textfile, and return the status. It never raises for a failed job.
"""

from __future__ import annotations

import contextlib
import os
import secrets as _random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from emrops.config import Settings
from emrops.db.urls import sqlite_db_url
from emrops.errors import Busy, CheckFailed, EmropsError, ExitCode, UsageError
from emrops.logs import get_logger, iso_utc
from emrops.schedule import cron, joblock
from emrops.schedule.status import JobStatus, read_status, record
from emrops.scratch import scratch_dir

log = get_logger(__name__)
JOBS = ("backup", "verify", "rotate", "drill")
DESCRIPTIONS = {
    "backup": "backup run (label 'scheduled')",
    "verify": "backup verify --latest",
    "rotate": "backup rotate with schedule.keep_* (only verified backups count)",
    "drill": "restore the latest backup into scratch + readiness query (recovery time)",
}


@dataclass
class JobContext:
    """What jobs need, taken from the settings once."""

    db_url: str
    store_spec: str
    status_dir: Path
    settings: Settings | None = None
    keep: tuple[int, int, int, int] = (3, 7, 4, 12)
    recipients: str | None = None
    level: int = 3
    schedules: dict[str, cron.Schedule | None] = field(default_factory=dict)
    run_id: str = ""
    source: str | None = None  # --source of the verify and drill jobs (None: db_url's backups)

    def source_filter(self) -> Any:
        """Which backups verify and the drill use: the configured database's (any database
        when none is configured), or ``source`` (a URL, a path or "all")."""
        from emrops.backup.sources import select_source

        default = self.settings is None or self.settings.sources.get("db_url") == "default"
        return select_source(self.source, self.db_url, default)

    @classmethod
    def from_settings(cls, cfg: Settings, run_id: str = "") -> JobContext:
        return cls(
            db_url=cfg.db_url,
            store_spec=str(cfg.get("backup.store")),
            status_dir=status_dir(cfg),
            settings=cfg,
            keep=(
                int(cfg.get("schedule.keep_last")),
                int(cfg.get("schedule.keep_daily")),
                int(cfg.get("schedule.keep_weekly")),
                int(cfg.get("schedule.keep_monthly")),
            ),
            recipients=cfg.get("backup.recipient"),
            level=int(cfg.get("backup.compression_level")),
            schedules=schedules(cfg),
            run_id=run_id,
        )

    @property
    def pg_server(self) -> str | None:
        return self.db_url if self.db_url.startswith("postgres") else None

    def store(self) -> Any:
        from emrops.backup.stores import open_store

        return open_store(self.store_spec, self.settings)


KEEP_KEYS = ("schedule.keep_last", "schedule.keep_daily", "schedule.keep_weekly",
             "schedule.keep_monthly")  # fmt: skip


def check_keep(keep: tuple[int, ...], cfg: Settings | None) -> None:
    """UsageError naming the keep_* setting that is wrong (the rotate job failed at every run
    naming `backup rotate`'s flags, while the scheduler started as if all was well)."""
    for key, value in zip(KEEP_KEYS, keep, strict=True):
        if value < 0:
            where = f" (from {cfg.sources.get(key, 'default')})" if cfg else ""
            raise UsageError(
                f"{key}{where} must not be negative: {value}",
                hint="a count of backups to keep: 0 or more",
            )
    if not any(keep):
        raise UsageError(
            "schedule.keep_last, keep_daily, keep_weekly and keep_monthly are all 0: the rotate "
            "job would keep nothing",
            hint="keep at least one backup (e.g. keep_last = 3), or set schedule.rotate = 'off'",
        )


def status_dir(cfg: Settings) -> Path:
    value = cfg.get("schedule.status_dir")
    return Path(value) if value else cfg.state_dir / "status"


def schedules(cfg: Settings) -> dict[str, cron.Schedule | None]:
    """Every job's parsed schedule (None: off); UsageError naming the setting when invalid."""
    out: dict[str, cron.Schedule | None] = {}
    for job in JOBS:
        key = f"schedule.{job}"
        try:
            out[job] = cron.parse(cfg.get(key))
        except UsageError as exc:
            raise UsageError(f"{key}: {exc.message}", hint=exc.hint) from None
    return out


@dataclass
class Outcome:
    bytes: int = 0
    backup_id: str | None = None
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def run_backup_job(ctx: JobContext) -> Outcome:
    from emrops.backup.run import RunOptions, run_backup

    opts = RunOptions(
        db_url=ctx.db_url,
        label="scheduled",
        encrypt=bool(ctx.recipients),
        recipients=ctx.recipients,
        level=ctx.level,
    )
    manifest = run_backup(ctx.store(), opts)
    return Outcome(manifest.size, manifest.id, f"backup {manifest.id} ({manifest.size} bytes)")


def run_verify_job(ctx: JobContext) -> Outcome:
    from emrops.backup.verify import raise_failures, verify_backups

    results = verify_backups(
        ctx.store(), [], pg_server=ctx.pg_server, latest=True, source=ctx.source_filter()
    )
    raise_failures(results)
    return Outcome(0, results[0].backup_id, f"verified {results[0].backup_id}")


def run_rotate_job(ctx: JobContext) -> Outcome:
    from emrops.backup import catalog, retention

    check_keep(ctx.keep, ctx.settings)
    result = catalog.rotate(ctx.store(), retention.Policy(*ctx.keep))
    kept = len(result.kept)
    return Outcome(
        0, None, f"kept {kept}, deleted {len(result.deleted)}", {"deleted": len(result.deleted)}
    )


def run_drill_job(ctx: JobContext) -> Outcome:
    """Restore the newest backup into scratch, run the readiness query, time the recovery."""
    from emrops.backup.restore import restore
    from emrops.backup.verify import load_manifest, select_ids

    store = ctx.store()
    source = ctx.source_filter()
    ids = select_ids(store, source, latest=True)
    if not ids:
        of = f" of {source.describe()}" if source is not None else ""
        raise EmropsError(
            f"no backups{of} in {store.url} to drill", hint="run the backup job first"
        )
    backup_id = ids[-1]
    manifest = load_manifest(store, backup_id)
    started = time.monotonic()
    with _scratch_target(manifest.engine, ctx.db_url) as target:
        restore(store, backup_id, target, pg_server=ctx.pg_server)
        revision, sessions = readiness(target)
        recovery = round(time.monotonic() - started, 3)
    problems = []
    if revision != manifest.schema_revision:
        problems.append(f"schema revision {revision}, backup says {manifest.schema_revision}")
    expected = manifest.row_counts.get("sessions")
    if expected is not None and sessions != expected:
        problems.append(f"{sessions} sessions, backup says {expected}")
    if problems:
        raise CheckFailed(f"restore drill of {backup_id}: " + "; ".join(problems))
    return Outcome(
        manifest.size,
        backup_id,
        f"restored {backup_id} in {recovery:.2f}s: ready, revision {revision}, {sessions} sessions",
        {"recovery_seconds": recovery, "sessions": sessions},
    )


def readiness(url: str) -> tuple[str | None, int]:
    """The sim app's readiness query against ``url``: reachable, schema revision, sessions."""
    import sqlalchemy as sa

    from emrops.db import schema
    from emrops.db.engine import check_database, create_engine, db_errors
    from emrops.db.migrations_api import current_revision

    engine = create_engine(url, pool_size=1, max_overflow=0, create=False)
    try:
        check_database(engine)
        revision = current_revision(engine)
        with db_errors(engine.url), engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(schema.sessions)).scalar()
        return revision, int(count or 0)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _scratch_target(engine: str, db_url: str) -> Any:
    if engine == "sqlite":
        with scratch_dir(None, "emrops-drill-") as tmp:
            yield sqlite_db_url(tmp / "drill.db")
        return
    if not db_url.startswith("postgres"):
        raise UsageError(
            "the restore drill of a PostgreSQL backup needs a PostgreSQL server",
            hint="set db_url / EMROPS_DB_URL to the PostgreSQL database",
        )
    from emrops.db.engine import parse_db_url

    url = parse_db_url(db_url).url
    name = f"emrops_drill_{_random.token_hex(6)}"
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(url.set(database="postgres"), name)


def _drop_database(admin_url: Any, name: str) -> None:

    from emrops.db.engine import oneshot_engine

    engine = oneshot_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # the drill result matters more than the clean-up
        log.warning("could not drop drill database %s: %s", name, exc)
    finally:
        engine.dispose()


RUNNERS: dict[str, Callable[[JobContext], Outcome]] = {
    "backup": run_backup_job,
    "verify": run_verify_job,
    "rotate": run_rotate_job,
    "drill": run_drill_job,
}


def execute(
    ctx: JobContext,
    job: str,
    tick: datetime | None,
    *,
    claim: bool = True,
    trigger: str = joblock.RUN_JOB,
) -> JobStatus:
    """One run of ``job`` for the scheduled time ``tick``: lock, claim, run, record. Never
    raises for a failed job: the result is in the returned (and recorded) status.
    ``trigger`` is who asks (the scheduler, or run-job): see emrops/schedule/joblock.py."""
    started_at = iso_utc()
    started = time.monotonic()
    tick_text = iso_utc(tick) if tick else None

    def finish(result: str, outcome: Outcome | None, error: str | None, code: int) -> JobStatus:
        outcome = outcome or Outcome()
        status = JobStatus(
            job=job,
            result=result,
            started_at=started_at,
            finished_at=iso_utc(),
            duration_s=round(time.monotonic() - started, 3),
            tick=tick_text,
            bytes=outcome.bytes,
            backup_id=outcome.backup_id,
            detail=outcome.detail,
            error=error,
            exit_code=code,
            run_id=ctx.run_id,
            extra=outcome.extra,
            trigger=trigger,
        )
        try:
            record(ctx.status_dir, status)
        except (EmropsError, OSError) as exc:  # a full or read-only status folder
            # the job's own result stands (a backup taken stays taken); the status that
            # health checks and `schedule show` read is stale, which must not pass unseen
            status.unrecorded = str(exc)
            log.error("job %s %s, but its status could not be recorded: %s", job, result, exc)
        level = log.info if status.ok else log.warning if result == "busy" else log.error
        level(
            "job %s (tick %s): %s in %.2fs%s",
            job,
            tick_text or "-",
            result,
            status.duration_s,
            f": {error}" if error else (f": {outcome.detail}" if outcome.detail else ""),
            extra={"data": {"job": job, "result": result, "tick": tick_text}},
        )
        return status

    try:
        with joblock.job_running(ctx.status_dir, job, trigger):
            if claim and tick_text is not None:
                done = joblock.already_run(read_status(ctx.status_dir, job), tick_text, trigger)
                if done:
                    return finish("skipped", Outcome(detail=done), None, 0)
            if claim and tick is not None:
                from emrops.schedule.claim import claim_tick, needs_claim

                if needs_claim(ctx.db_url):
                    me = f"{socket.gethostname()}:{os.getpid()}"
                    got = claim_tick(ctx.db_url, job, tick, me)
                    if not got.claimed:
                        return finish(
                            "skipped", Outcome(detail=f"tick claimed by {got.holder}"), None, 0
                        )
            outcome = RUNNERS[job](ctx)
    except Busy as exc:
        return finish("busy", None, exc.message, int(ExitCode.BUSY))
    except EmropsError as exc:
        return finish("failure", None, exc.message, int(exc.exit_code))
    except Exception as exc:  # a job must never take the scheduler down
        log.debug("job %s crashed", job, exc_info=True)
        return finish("failure", None, f"unexpected {type(exc).__name__}: {exc}", 1)
    return finish("success", outcome, None, 0)
