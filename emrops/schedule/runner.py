"""``emrops schedule run``: one APScheduler 3.x BlockingScheduler in UTC running the jobs.

Choices, each against a known APScheduler trap (see docs/schedule.md):

* in-memory job store, jobs rebuilt from config at every start: nothing pickled, so no
  "Unable to restore job -- removing it";
* ``coalesce=True`` and ``max_instances=1``: missed runs collapse into one and a job never
  overlaps itself; the store lock keeps it from overlapping one-shot commands too;
* ``misfire_grace_time`` of an hour by default (APScheduler's default of 1 s silently drops a
  run that starts a little late);
* APScheduler has no catch-up without a persistent store: at start, a job whose last success
  (from its status file) predates its latest scheduled time runs at once;
* the executor passes the scheduled fire time to the job, which claims that tick on PostgreSQL
  so several schedulers run each tick once;
* a heartbeat file for ``emrops health`` (a scheduler that stopped silently is the most common
  complaint); SIGTERM/SIGINT stop it cleanly: no new runs, running jobs finish.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import filelock
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from emrops.errors import Busy, EmropsError, UsageError
from emrops.logs import get_logger, iso_utc
from emrops.schedule import status as status_files
from emrops.schedule.cron import Schedule
from emrops.schedule.joblock import SCHEDULER
from emrops.schedule.jobs import JobContext, check_keep, execute
from emrops.schedule.status import parse_time

log = get_logger(__name__)
_current = threading.local()


class TickExecutor(ThreadPoolExecutor):
    """A thread pool that tells the job which scheduled time it runs for (APScheduler 3 does
    not pass it to the job function)."""

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        def run_with_tick() -> Any:
            _current.fire_time = run_times[-1]  # coalesced: the newest missed time
            try:
                return run_job(job, job._jobstore_alias, run_times, self._logger.name)
            finally:
                _current.fire_time = None

        def callback(future: Any) -> None:
            exc = future.exception()
            if exc:
                self._run_job_error(job.id, exc, getattr(exc, "__traceback__", None))
            else:
                self._run_job_success(job.id, future.result())

        self._pool.submit(run_with_tick).add_done_callback(callback)

    def wait(self) -> None:
        self._pool.shutdown(wait=True)


def current_fire_time() -> datetime | None:
    return getattr(_current, "fire_time", None)


def overdue(ctx: JobContext, job: str, schedule: Schedule, now: datetime) -> datetime | None:
    """The missed tick to catch up on, or None when the last success is recent enough.

    A job is overdue when its last success predates its latest scheduled time (so at least
    one run was missed: the last success is older than the schedule's period).
    """
    latest = schedule.latest_at_or_before(now)
    last = status_files.read_status(ctx.status_dir, job)
    if last is None or last.last_success_at is None:
        return latest
    done = parse_time(last.last_success_tick or last.last_success_at)
    return latest if done < latest else None


MAX_MISFIRE_GRACE_S = 366 * 86400


@dataclass
class RunOptions:
    misfire_grace_s: float = 3600.0  # at most MAX_MISFIRE_GRACE_S
    heartbeat_s: float = 30.0
    catch_up: bool = True
    install_signals: bool = True
    on_started: Callable[[dict[str, Any]], None] | None = None
    stopped_by: list[str] = field(default_factory=list)


def run_scheduler(ctx: JobContext, opts: RunOptions) -> str:
    """Run until SIGTERM/SIGINT; returns the name of the signal that stopped it."""
    if opts.misfire_grace_s > MAX_MISFIRE_GRACE_S:  # APScheduler overflows past C int seconds
        raise UsageError(
            f"schedule.misfire_grace of {opts.misfire_grace_s:g} s is longer than a year",
            hint="a run late by more than this is skipped; use e.g. 1h or 1d",
        )
    if opts.misfire_grace_s < 1:  # APScheduler wants a whole number of seconds, at least 1
        raise UsageError(
            f"schedule.misfire_grace of {opts.misfire_grace_s:g} s is shorter than a second",
            hint="a run late by more than this is skipped; use e.g. 1h (the default)",
        )
    if ctx.schedules.get("rotate"):  # refused at start, not at the rotate job's first run
        check_keep(ctx.keep, ctx.settings)
    status_files.prepare(ctx.status_dir)  # an unwritable status folder: refused now, not
    # a traceback in the log every heartbeat while health reports the scheduler dead
    lock = _scheduler_lock(ctx.status_dir)
    try:
        return _run(ctx, opts)
    finally:
        lock.release()


def _scheduler_lock(status_dir: Path) -> filelock.BaseFileLock:
    """One scheduler per status folder. A second one ran every job again for each tick the
    first had just run (the store lock only stops runs that overlap), and the two overwrote
    one heartbeat, so health saw a live scheduler while either was dead. Busy (exit 75)."""
    lock = filelock.FileLock(str(status_dir / "scheduler.lock"), timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        beat = status_files.read_heartbeat(status_dir)
        who = f" (pid {beat.get('pid')} on {beat.get('host')})" if beat else ""
        raise Busy(
            f"another scheduler is running with the status folder {status_dir}{who}",
            hint="run one scheduler per deployment: stop the other one, or use the cron/systemd "
            "lines of `schedule install` instead of `schedule run`",
        ) from None
    return lock


def _run(ctx: JobContext, opts: RunOptions) -> str:
    jobs = {name: s for name, s in ctx.schedules.items() if s is not None}
    executor = TickExecutor(max_workers=len(jobs) + 2)
    scheduler = BlockingScheduler(
        timezone=UTC,
        executors={"default": executor},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": int(opts.misfire_grace_s),
        },
    )
    started_at = iso_utc()

    # max_instances=1 is per APScheduler job; the catch-up run is another APScheduler job, so
    # runs of one emrops job are serialised here (a tick arriving meanwhile waits, not "busy")
    job_locks = {name: threading.Lock() for name in jobs}

    def job_run(job: str, tick: str | None = None) -> None:
        fire = parse_time(tick) if tick else current_fire_time()
        with job_locks[job]:
            execute(ctx, job, fire, trigger=SCHEDULER)

    def jobs_summary() -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, schedule in jobs.items():
            found = scheduler.get_job(name)
            nxt = getattr(found, "next_run_time", None)  # pending jobs have none before start
            if nxt is None and found is not None:
                nxt = schedule.next_after(datetime.now(UTC))
            out[name] = {
                "schedule": schedule.expression,
                "next_run": iso_utc(nxt) if nxt else None,
            }
        return out

    failing: list[str] = []  # the heartbeat's current failure, said once per outage

    def heartbeat() -> None:
        # A full or read-only status folder logged "heartbeat crashed: ..." at every beat
        # (2880 lines a day at 30s); now once when it starts failing, and once when it is
        # written again. Health sees the stale heartbeat meanwhile.
        try:
            status_files.write_heartbeat(ctx.status_dir, started_at, jobs_summary(), "running")
        except (EmropsError, OSError) as exc:
            if not failing:
                log.error("cannot write the heartbeat (retried every beat): %s", exc)
            failing[:] = [str(exc)]
            return
        if failing:
            log.info("heartbeat written again after: %s", failing[0])
            failing.clear()

    now = datetime.now(UTC)
    overdue_ticks: dict[str, str] = {}
    for name, schedule in jobs.items():
        scheduler.add_job(job_run, schedule.trigger(), id=name, name=name, kwargs={"job": name})
        missed = overdue(ctx, name, schedule, now) if opts.catch_up else None
        if missed is not None:
            log.info("job %s is overdue (missed tick %s): running it now", name, iso_utc(missed))
            overdue_ticks[name] = iso_utc(missed)

    def catch_up() -> None:
        # one after the other, in job order: verify then checks the backup just taken
        for name, tick in overdue_ticks.items():
            job_run(name, tick)

    if overdue_ticks:
        scheduler.add_job(catch_up, "date", run_date=now, id="catch-up", name="catch-up")
    scheduler.add_job(
        heartbeat, "interval", seconds=opts.heartbeat_s, id="heartbeat", next_run_time=now
    )

    def on_missed(event: JobExecutionEvent) -> None:
        log.warning(
            "job %s missed its run at %s (later than schedule.misfire_grace)",
            event.job_id,
            iso_utc(event.scheduled_run_time),
        )

    scheduler.add_listener(on_missed, EVENT_JOB_MISSED)

    def on_still_running(event: JobSubmissionEvent) -> None:
        # APScheduler says this through its own logger, as plain text in a JSON log
        # ("Execution of job ... skipped: maximum number of running instances reached")
        log.warning(
            "job %s is still running: its tick at %s is skipped (runs never overlap)",
            event.job_id,
            iso_utc(event.scheduled_run_times[-1]),
            extra={"data": {"job": event.job_id, "result": "skipped"}},
        )

    def on_error(event: JobExecutionEvent) -> None:
        log.error("%s crashed: %s", event.job_id, event.exception)

    scheduler.add_listener(on_still_running, EVENT_JOB_MAX_INSTANCES)
    scheduler.add_listener(on_error, EVENT_JOB_ERROR)
    # the listeners above say what matters, in the log's format; APScheduler's own lines
    # would reach stderr through logging's last-resort handler, unformatted
    logging.getLogger("apscheduler").addHandler(logging.NullHandler())
    logging.getLogger("apscheduler").propagate = False

    def stop(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if not opts.stopped_by:
            opts.stopped_by.append(name)
            log.info("%s received: stopping (running jobs finish first)", name)
            # shutdown() takes the scheduler's locks: not from inside a signal handler
            threading.Thread(target=scheduler.shutdown, kwargs={"wait": False}).start()

    if opts.install_signals:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        # the terminal closing (or `kill -HUP`) ended the process on the spot: a running
        # backup killed half-way, the heartbeat left "running". It stops like SIGTERM.
        signal.signal(signal.SIGHUP, stop)
    log.info(
        "scheduler started (UTC): %s",
        ", ".join(f"{n} '{s.expression}'" for n, s in jobs.items()) or "no jobs",
    )
    if opts.on_started:
        opts.on_started(jobs_summary())
    scheduler.start()  # blocks until shutdown
    executor.wait()
    status_files.write_heartbeat(ctx.status_dir, started_at, {}, "stopped")
    log.info("scheduler stopped")
    return opts.stopped_by[0] if opts.stopped_by else "shutdown"
