"""``emrops schedule show``: each job, its schedule, next run, last run and result."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from emrops.logs import iso_utc
from emrops.schedule import status as status_files
from emrops.schedule.jobs import JOBS, JobContext
from emrops.schedule.status import JobStatus, parse_time


@dataclass
class JobView:
    job: str
    schedule: str  # the expression, or "off"
    next_run: str | None
    last_run: str | None
    result: str | None  # success | failure | busy | skipped | None (never ran)
    last_success: str | None
    duration_s: float | None
    detail: str
    status: JobStatus | None


@dataclass
class Overview:
    status_dir: str
    scheduler: dict[str, Any] | None  # the heartbeat (state, updated_at, pid, host) or None
    heartbeat_age_s: float | None
    jobs: list[JobView]


def overview(ctx: JobContext, now: datetime | None = None) -> Overview:
    now = now or datetime.now(UTC)
    views = []
    for job in JOBS:
        schedule = ctx.schedules.get(job)
        last = status_files.read_status(ctx.status_dir, job)
        views.append(
            JobView(
                job=job,
                schedule=schedule.expression if schedule else "off",
                next_run=iso_utc(schedule.next_after(now)) if schedule else None,
                last_run=last.started_at if last else None,
                result=last.result if last else None,
                last_success=last.last_success_at if last else None,
                duration_s=last.duration_s if last else None,
                detail=(last.error or last.detail) if last else "",
                status=last,
            )
        )
    beat = status_files.read_heartbeat(ctx.status_dir)
    age = None
    if beat and beat.get("updated_at"):
        age = round((now - parse_time(str(beat["updated_at"]))).total_seconds(), 1)
    return Overview(str(ctx.status_dir), beat, age, views)
