"""One run of a job at a time per status folder, and each scheduler tick run once.

``schedule run`` and ``schedule run-job`` (cron, systemd timers) can both be set up for one
deployment. The store lock only stops runs that overlap in the store, so a cron run-job that
started a moment after the scheduler's run of the same tick finished took a second backup
for that tick (and verify and drill runs, which read the store, overlapped freely).

* ``<status_dir>/<job>.lock``: an advisory ``fcntl`` lock held for the whole run, by the
  scheduler and by run-job alike. Held elsewhere: the run is ``busy`` (exit 75), naming the
  holder. The kernel drops it when its holder dies, so it never goes stale.
* A tick already run successfully is not run again: the scheduler skips any tick recorded as
  done (whoever ran it), and run-job skips a tick the scheduler has done (a manual run-job
  after a run-job still runs: that is a person asking for another backup).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from emrops.backup.lock import Holder
from emrops.errors import Busy
from emrops.logs import get_logger
from emrops.schedule.status import JobStatus

SCHEDULER = "scheduler"
RUN_JOB = "run-job"
log = get_logger(__name__)


@contextlib.contextmanager
def job_running(status_dir: Path, job: str, trigger: str) -> Iterator[None]:
    """Hold ``<status_dir>/<job>.lock``; Busy naming the holder when another run has it."""
    path = status_dir / f"{job}.lock"
    try:
        status_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        # a full or read-only status folder: the job still runs (a backup taken matters more
        # than its bookkeeping); its status cannot be recorded either, and says so
        log.warning("job %s runs without its lock: cannot create %s: %s", job, path, exc.strerror)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = Holder.parse(os.pread(fd, 4096, 0))
            who = f" ({holder.describe()})" if holder else ""
            raise Busy(
                f"job {job} is already running{who}",
                hint="runs of one job never overlap: this one is left out (run the scheduler "
                "or cron/systemd timers, not both)",
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, Holder.me(f"{trigger} {job}").to_json().encode(), 0)
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def already_run(last: JobStatus | None, tick: str, trigger: str) -> str | None:
    """Why the tick ``tick`` must not run again (the detail of a ``skipped`` run), or None."""
    if last is None or last.last_success_tick != tick:
        return None
    if trigger == RUN_JOB and last.last_success_by != SCHEDULER:
        return None  # a person (or cron) asking again: runs, as before
    by = last.last_success_by or "a run"
    return f"tick {tick} already run by {by} (at {last.last_success_at})"
