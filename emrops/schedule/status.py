"""Status files of scheduled jobs (the resticprofile model) and the scheduler heartbeat.

Per job, in the status folder (``schedule.status_dir``, default ``state_dir/status``):

* ``<job>.json``: the last run (result, UTC times, duration, bytes, backup id, error, exit
  code, tick, host, pid, run id) and the last success, kept across failed runs;
* ``<job>.prom``: the same as Prometheus gauges for node_exporter's textfile collector.

``heartbeat.json`` is rewritten by ``emrops schedule run`` every ``schedule.heartbeat_interval``
and marked ``stopped`` on a clean shutdown; ``emrops health`` checks its age. Every file is
written atomically (beside, fsync, rename), so readers never see half a file.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.errors import EmropsError
from emrops.logs import get_logger, iso_utc
from emrops.typedjson import check_fields

log = get_logger(__name__)

FORMAT = "emrops-schedule-status/1"
HEARTBEAT = "heartbeat.json"
# resticprofile's convention: 2 success, 1 warning (skipped), 0 failure
RESULT_CODES = {"success": 2, "skipped": 1, "busy": 1, "failure": 0}


@dataclass
class JobStatus:
    job: str
    result: str  # success | failure | busy (store lock held) | skipped (tick claimed elsewhere)
    started_at: str
    finished_at: str
    duration_s: float
    tick: str | None = None
    bytes: int = 0
    backup_id: str | None = None
    detail: str = ""
    error: str | None = None
    exit_code: int = 0
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    run_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    last_success_at: str | None = None
    last_success_tick: str | None = None
    last_success_duration_s: float | None = None
    last_success_bytes: int | None = None
    trigger: str | None = None  # scheduler | run-job (None: an older record, or a test)
    last_success_by: str | None = None  # the trigger of the last success
    format: str = FORMAT
    # why this run's status could not be written (full or read-only folder); never saved
    unrecorded: str | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.result in ("success", "skipped")


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_status(folder: Path, job: str) -> JobStatus | None:
    """The last recorded run of ``job``, or None (never ran, or a file that cannot be read or
    holds a damaged record: logged, and then treated as no record, so the next run of the job
    replaces it instead of failing on it)."""
    path = folder / f"{job}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        known = {k: v for k, v in data.items() if k in JobStatus.__dataclass_fields__}
        check_fields(JobStatus, known, "the record")
        for name in ("started_at", "finished_at", "last_success_at"):
            if known.get(name) is not None:
                parse_time(known[name])
        return JobStatus(**known)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON, UTF-8, fields
        log.warning("ignoring the damaged job status %s: %s", path, exc)
        return None


def record(folder: Path, status: JobStatus) -> JobStatus:
    """Write the status JSON and the Prometheus textfile for one run (keeping the last success)."""
    previous = read_status(folder, status.job)
    if status.result == "success":
        status.last_success_at = status.started_at
        status.last_success_tick = status.tick
        status.last_success_duration_s = status.duration_s
        status.last_success_bytes = status.bytes
        status.last_success_by = status.trigger
    elif previous is not None:
        status.last_success_at = previous.last_success_at
        status.last_success_tick = previous.last_success_tick
        status.last_success_duration_s = previous.last_success_duration_s
        status.last_success_bytes = previous.last_success_bytes
        status.last_success_by = previous.last_success_by
    folder.mkdir(parents=True, exist_ok=True)
    saved = {k: v for k, v in asdict(status).items() if k != "unrecorded"}
    atomic.write_json(folder / f"{status.job}.json", saved, mode=0o600)
    # node_exporter's textfile collector runs as another user and must read the metrics file
    atomic.write_text(folder / f"{status.job}.prom", prometheus_text(status), mode=0o644)
    return status


def _ts(text: str | None) -> float:
    return parse_time(text).timestamp() if text else 0.0


def prometheus_text(status: JobStatus) -> str:
    """Text exposition format, one file per job (so concurrent jobs never clobber each other)."""
    job = status.job
    lines: list[tuple[str, str, str, float, str]] = [
        ("emrops_schedule_last_run_timestamp_seconds", "gauge", "Start of the last run (UTC).",
         _ts(status.started_at), ""),
        ("emrops_schedule_last_success_timestamp_seconds", "gauge",
         "Start of the last successful run (0: never).", _ts(status.last_success_at), ""),
        ("emrops_schedule_last_duration_seconds", "gauge", "Duration of the last run.",
         status.duration_s, ""),
        ("emrops_schedule_last_bytes", "gauge", "Bytes written by the last run (backup size).",
         float(status.bytes), ""),
        ("emrops_schedule_status", "gauge", "Last result: 2 success, 1 skipped or busy, 0 failure.",
         float(RESULT_CODES.get(status.result, 0)), ""),
        ("emrops_schedule_last_exit_code", "gauge", "Exit code of the last run.",
         float(status.exit_code), ""),
    ]  # fmt: skip
    out: list[str] = []
    for name, kind, help_text, value, _ in lines:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        out.append(f'{name}{{job="{job}"}} {_number(value)}')
    out.append("# HELP emrops_schedule_result Last result of the job as a label (value 1).")
    out.append("# TYPE emrops_schedule_result gauge")
    out.append(f'emrops_schedule_result{{job="{job}",result="{status.result}"}} 1')
    for key, value in sorted(status.extra.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            metric = f"emrops_schedule_{job}_{key}"
            out.append(f"# TYPE {metric} gauge")
            out.append(f'{metric}{{job="{job}"}} {_number(float(value))}')
    return "\n".join(out) + "\n"


def _number(value: float) -> str:
    # full precision: %g would turn a Unix timestamp into 1.79564e+09
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def prepare(folder: Path) -> None:
    """Create the status folder and check that files can be written there; else EmropsError
    naming it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a name of its own: two schedulers starting together removed each other's probe
        probe = folder / f".write-test.{os.getpid()}"
        atomic.write_json(probe, {}, mode=0o600)
        probe.unlink()
    except (OSError, EmropsError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise EmropsError(
            f"cannot write the scheduler's status files in {folder}: {reason}",
            hint="set schedule.status_dir to a folder the scheduler's user can write",
        ) from None


def write_heartbeat(folder: Path, started_at: str, jobs: dict[str, Any], state: str) -> None:
    """Record that the scheduler is alive (``state`` running) or stopped cleanly."""
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(
        folder / HEARTBEAT,
        {
            "format": FORMAT,
            "state": state,
            "updated_at": iso_utc(),
            "started_at": started_at,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "jobs": jobs,
        },
        mode=0o600,
    )


def read_heartbeat(folder: Path) -> dict[str, Any] | None:
    """The scheduler's heartbeat, or None when there is none or it is damaged (its time must
    parse: health and `schedule show` compute its age)."""
    try:
        data = json.loads((folder / HEARTBEAT).read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            return None
        if data.get("updated_at") is not None:
            parse_time(str(data["updated_at"]))
    except (OSError, ValueError, RecursionError):
        return None
    return data
