"""The checks behind ``emrops health``; each one names what it found.

Checks (in order): ``sim_health`` (GET /health), ``sim_ready`` (GET /ready: database ok),
``database`` (emrops connects itself), ``backup_age`` (the newest *verified* backup is younger
than the limit), ``disk_space`` (free space where the store lives), ``scheduler`` (the
heartbeat of ``emrops schedule run`` is fresh). A check that cannot run (unreachable server,
unreadable store) fails with the reason; ``skip`` leaves checks out on purpose.
"""

from __future__ import annotations

import math
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emrops.backup.retention import FUTURE_SLACK
from emrops.db.sqlite_file import MissingDatabase
from emrops.errors import EmropsError, UsageError
from emrops.logs import iso_utc
from emrops.units import format_duration

CHECKS = ("sim_health", "sim_ready", "database", "backup_age", "disk_space", "scheduler")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    skipped: bool = False


@dataclass
class HealthOptions:
    sim_url: str
    db_url: str
    store_spec: str
    status_dir: Path
    max_backup_age_s: float
    max_heartbeat_age_s: float
    min_free_bytes: int
    token: str | None = None
    settings: Any = None
    skip: frozenset[str] = frozenset()
    timeout_s: float = 5.0
    source: str | None = None  # backup_age: backups of this database or "all" (None: db_url's)
    db_url_is_default: bool = False  # db_url is the built-in default: every source counts


@dataclass
class HealthReport:
    ok: bool
    checked_at: str
    host: str
    checks: list[Check]
    alert: dict[str, Any] | None = None
    format: str = "emrops-health/1"

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def check_names(names: list[str]) -> frozenset[str]:
    unknown = sorted(set(names) - set(CHECKS))
    if unknown:
        raise UsageError(
            f"unknown check {', '.join(unknown)}", hint=f"checks are: {', '.join(CHECKS)}"
        )
    return frozenset(names)


def run_checks(opts: HealthOptions) -> HealthReport:
    """Run every check not skipped; never raises for a failing check. Raises MissingDatabase
    (exit 1) when --db names an SQLite file that does not exist (nothing is created)."""
    now = datetime.now(UTC)
    runners: dict[str, Callable[[HealthOptions, datetime], tuple[bool, str]]] = {
        "sim_health": _sim_health,
        "sim_ready": _sim_ready,
        "database": _database,
        "backup_age": _backup_age,
        "disk_space": _disk_space,
        "scheduler": _scheduler,
    }
    checks = []
    for name in CHECKS:
        if name in opts.skip:
            checks.append(Check(name, True, "skipped (--skip)", skipped=True))
            continue
        try:
            ok, detail = runners[name](opts, now)
        except MissingDatabase:
            raise  # a mistyped --db path is a configuration error (exit 1), not a health finding
        except EmropsError as exc:
            ok, detail = False, exc.message
        except Exception as exc:  # a broken check is a failed check, not a crash
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        checks.append(Check(name, ok, detail))
    return HealthReport(
        ok=all(c.ok for c in checks), checked_at=iso_utc(now), host=socket.gethostname(),
        checks=checks,
    )  # fmt: skip


def _get(opts: HealthOptions, path: str) -> Any:
    import requests

    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    url = opts.sim_url.rstrip("/") + path
    try:
        return requests.get(url, timeout=opts.timeout_s, headers=headers)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise EmropsError(f"{url} unreachable ({reason})") from None


def _sim_health(opts: HealthOptions, _now: datetime) -> tuple[bool, str]:
    response = _get(opts, "/health")
    return response.status_code == 200, f"GET /health: {response.status_code}"


def _sim_ready(opts: HealthOptions, _now: datetime) -> tuple[bool, str]:
    response = _get(opts, "/ready")
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    ready = response.status_code == 200 and body.get("status") == "ready"
    detail = f"GET /ready: {response.status_code}"
    if ready:
        detail += f", database {body.get('database')}, revision {body.get('schema_revision')}"
        if body.get("maintenance"):
            detail += ", maintenance ON"
    elif body:
        detail += f" {body.get('status') or body.get('error') or body}"
    return ready, detail


def _database(opts: HealthOptions, _now: datetime) -> tuple[bool, str]:
    from emrops.db.engine import check_database, create_engine, parse_db_url
    from emrops.db.migrations_api import current_revision, known_revision

    db = parse_db_url(opts.db_url)
    # reads never create, and never change the file: a read-write SQLite connection would
    # switch a rollback-journal database to WAL (and wait 10 s for a lock, not --timeout)
    engine = create_engine(
        db,
        pool_size=1,
        max_overflow=0,
        create=False,
        readonly=db.engine_name == "sqlite",
        connect_timeout=math.ceil(opts.timeout_s),
        busy_timeout_s=opts.timeout_s,
    )
    try:
        check_database(engine)
        revision = current_revision(engine)
        detail = f"{db.masked()} reachable, revision {revision or 'none'}"
        if revision is None or not known_revision(revision):  # not (yet) an EMRsim schema
            return True, detail
        from emrops.db.control import get_maintenance

        flag = get_maintenance(engine)
        if flag.on:
            # the app refuses writes on every instance; one left on by a restore or migration
            # that was killed says so in its message, and nothing else would show it
            since = f" since {flag.since:%Y-%m-%d %H:%M} UTC" if flag.since else ""
            return False, (
                f"{detail}, but maintenance mode is ON{since} ({flag.message or 'no message'}): "
                "writes get 503; `emrops sim maintenance off` once the work it names is over"
            )
        return True, detail
    finally:
        engine.dispose()


def _open_store(opts: HealthOptions) -> Any:
    from emrops.backup.stores import open_store

    return open_store(opts.store_spec, opts.settings)


def _backup_age(opts: HealthOptions, now: datetime) -> tuple[bool, str]:
    from emrops.backup import catalog
    from emrops.backup.sources import select_source

    store = _open_store(opts)
    limit = format_duration(opts.max_backup_age_s)
    source = select_source(opts.source, opts.db_url, opts.db_url_is_default)
    entries = catalog.list_backups(store, source)
    verified = [e for e in entries if e.counts_as_verified]
    if not verified:
        of = f" of {source.describe()}" if source is not None else ""
        return False, f"no verified backup{of} in {store.url} (limit {limit})"
    ages = [
        (now - datetime.fromisoformat(e.created_at.replace("Z", "+00:00"))).total_seconds()
        for e in verified
    ]
    # a date later than now by more than FUTURE_SLACK: a clock was ahead when it was written
    # (another host, or this one stepped back since); it would look young until the clocks
    # caught up, however long ago backups stopped
    slack = FUTURE_SLACK.total_seconds()
    ahead = [(e, -age) for e, age in zip(verified, ages, strict=True) if -age > slack]
    if ahead:
        entry, by = ahead[-1]
        return False, (
            f"verified backup {entry.id} is dated {format_duration(by)} in the future "
            f"({entry.created_at}; {len(ahead)} such): the clock of the host that took it was "
            "ahead, or this one's is behind; its age says nothing of when backups last ran. "
            "Fix the clocks (NTP), then remove or re-take it"
        )
    age = min(ages)
    newest = verified[ages.index(age)]
    text = f"newest verified backup {newest.id} is {format_duration(max(age, 0))} old"
    return age <= opts.max_backup_age_s, f"{text} (limit {limit})"


def _disk_space(opts: HealthOptions, _now: datetime) -> tuple[bool, str]:
    store = _open_store(opts)
    root = getattr(store, "root", None)
    if root is None:
        return True, f"{store.url}: remote store, no local disk to check"
    folder = Path(root)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    text = f"{_gb(free)} free at {folder} (minimum {_gb(opts.min_free_bytes)})"
    return free >= opts.min_free_bytes, text


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e7 else f"{n} bytes"


def _scheduler(opts: HealthOptions, now: datetime) -> tuple[bool, str]:
    from emrops.schedule.status import HEARTBEAT, parse_time, read_heartbeat

    beat = read_heartbeat(opts.status_dir)
    if beat is None or not beat.get("updated_at"):
        return False, (
            f"no heartbeat in {opts.status_dir / HEARTBEAT}: `emrops schedule run` is not running "
            "(skip this check when jobs run from cron or systemd timers)"
        )
    age = (now - parse_time(str(beat["updated_at"]))).total_seconds()
    who = f"pid {beat.get('pid')} on {beat.get('host')}"
    if beat.get("state") == "stopped":
        return False, f"scheduler ({who}) stopped at {beat['updated_at']}"
    if -age > FUTURE_SLACK.total_seconds():
        return False, (
            f"heartbeat of {who} is dated {format_duration(-age)} in the future "
            f"({beat['updated_at']}): a clock was ahead when it was written or this one is "
            "behind, so its age says nothing of whether the scheduler still runs; fix the "
            "clocks (NTP)"
        )
    limit = format_duration(opts.max_heartbeat_age_s)
    text = f"heartbeat of {who} {format_duration(max(age, 0))} ago (limit {limit})"
    return age <= opts.max_heartbeat_age_s, text
