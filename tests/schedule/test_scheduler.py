"""`schedule run` as a real process: fast cron ticks, status, heartbeat, catch-up, signals,
the store lock shared with one-shot commands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from emrops.backup.lock import local_lock
from emrops.logs import iso_utc
from emrops.schedule import cron
from tests.schedule.conftest import OFF, init_db, wait_for, write_config


def _job_events(events: list[dict], job: str, result: str | None = None) -> list[dict]:
    return [
        e for e in events
        if e.get("job") == job and (result is None or e.get("result") == result)
    ]  # fmt: skip


def test_runs_jobs_writes_status_and_stops_on_sigterm(
    cli, tmp_path: Path, sqlite_url: str, start_scheduler
) -> None:
    init_db(sqlite_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url},
           "schedule": {**OFF, "backup": "*/2 * * * * *", "verify": "1-59/2 * * * * *",
                        "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    scheduler = start_scheduler(config)
    # Under load a backup tick can find the store locked by a running verify (it then reports
    # busy, by design), so wait for enough successes of both jobs rather than a fixed time.
    assert wait_for(
        lambda: (
            len(_job_events(scheduler.events(), "verify", "success")) >= 2
            and len(_job_events(scheduler.events(), "backup", "success")) >= 2
        ),
        30,
        0.2,
    ), scheduler.log()
    beat = json.loads((scheduler.status_dir / "heartbeat.json").read_text())
    assert beat["state"] == "running" and beat["pid"] == scheduler.proc.pid
    assert set(beat["jobs"]) == {"backup", "verify"}

    shown = cli("--config", str(config), "schedule", "show", "--json")
    assert shown.exit_code == 0, shown.stderr
    view = json.loads(shown.stdout)
    jobs = {j["job"]: j for j in view["jobs"]}
    assert jobs["backup"]["schedule"] == "*/2 * * * * *" and jobs["rotate"]["schedule"] == "off"
    assert jobs["backup"]["result"] == "success" and jobs["rotate"]["result"] is None
    next_run = datetime.fromisoformat(jobs["backup"]["next_run"].replace("Z", "+00:00"))
    assert 0 <= (next_run - datetime.now(UTC)).total_seconds() <= 2.5
    assert next_run.second % 2 == 0
    assert view["scheduler"]["state"] == "running" and view["heartbeat_age_s"] < 5
    table = cli("--config", str(config), "schedule", "show")
    assert table.exit_code == 0 and "\nbackup\t" in table.stdout and "\tsuccess\t" in table.stdout
    assert "scheduler: running, pid" in table.stderr

    assert scheduler.stop(signal.SIGTERM) == 0
    events = scheduler.events()
    assert any("SIGTERM received" in e["msg"] for e in events)
    assert events[-1]["msg"] == "scheduler stopped"
    assert all(e["ts"].endswith("Z") for e in events)
    backups = _job_events(events, "backup", "success")
    assert len(backups) >= 2
    # regular ticks are even seconds; each backup is a complete, listed backup
    ticks = [e["tick"] for e in backups]
    assert all(int(t[17:19]) % 2 == 0 for t in ticks) and len(set(ticks)) == len(ticks)
    listed = cli("backup", "list", "--json", "--store", str(tmp_path / "backups"))
    assert len(json.loads(listed.stdout)["backups"]) == len(backups)
    beat = json.loads((scheduler.status_dir / "heartbeat.json").read_text())
    assert beat["state"] == "stopped"


def test_sigint_stops_with_130(tmp_path: Path, sqlite_url: str, start_scheduler) -> None:
    init_db(sqlite_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url},
           "schedule": {**OFF, "backup": "0 2 * * *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    scheduler = start_scheduler(config, "--no-catch-up")
    assert wait_for(lambda: (scheduler.status_dir / "heartbeat.json").exists(), 15, 0.1)
    assert scheduler.stop(signal.SIGINT) == 130
    last = json.loads(scheduler.log().splitlines()[-1])  # --log-format json: errors too
    assert (last["level"], last["message"], last["exit_code"]) == (
        "error",
        "interrupted: scheduler stopped cleanly",
        130,
    )
    assert not (scheduler.status_dir / "backup.json").exists()  # --no-catch-up: nothing ran


def test_catch_up_on_start(tmp_path: Path, sqlite_url: str, start_scheduler) -> None:
    """A daily job that missed its tick runs at once; one that ran for it does not."""
    init_db(sqlite_url)
    schedules = {**OFF, "backup": "0 2 * * *", "verify": "30 2 * * *",
                 "heartbeat_interval": "0.5s"}  # fmt: skip
    config = write_config(tmp_path, **{"": {"db_url": sqlite_url}, "schedule": schedules})
    status_dir = tmp_path / ".emrops" / "status"
    status_dir.mkdir(parents=True)
    verify_tick = cron.parse("30 2 * * *").latest_at_or_before(datetime.now(UTC))  # type: ignore[union-attr]
    recent = {
        "job": "verify", "result": "success", "started_at": iso_utc(verify_tick),
        "finished_at": iso_utc(verify_tick), "duration_s": 0.1, "tick": iso_utc(verify_tick),
        "last_success_at": iso_utc(verify_tick), "last_success_tick": iso_utc(verify_tick),
    }  # fmt: skip
    (status_dir / "verify.json").write_text(json.dumps(recent))
    scheduler = start_scheduler(config)
    assert wait_for(lambda: (scheduler.status(["backup"][0]) or {}).get("result"), 20, 0.1), (
        scheduler.log()
    )
    status = scheduler.status("backup")
    assert status is not None and status["result"] == "success"
    expected_tick = cron.parse("0 2 * * *").latest_at_or_before(datetime.now(UTC))  # type: ignore[union-attr]
    assert status["tick"] == iso_utc(expected_tick)
    time.sleep(1.0)
    assert json.loads((status_dir / "verify.json").read_text()) == recent  # not overdue
    assert scheduler.stop() == 0
    overdue = [e["msg"] for e in scheduler.events() if "overdue" in e["msg"]]
    assert overdue == [
        f"job backup is overdue (missed tick {iso_utc(expected_tick)}): running it now"
    ]

    # started again: the backup ran for its latest tick, so nothing is overdue any more
    again = start_scheduler(config, name="again")
    assert wait_for(lambda: "scheduler started" in again.log(), 15, 0.1), again.log()
    time.sleep(1.0)
    assert again.stop() == 0
    assert not any("overdue" in e["msg"] for e in again.events())
    assert scheduler.status("backup") == status


def test_overlap_with_one_shot_commands(
    cli, tmp_path: Path, sqlite_url: str, start_scheduler
) -> None:
    """The scheduler and one-shot `backup run` share the store lock: a job meeting a held lock
    records busy (exit 75), never a second writer; every backup published is complete."""
    init_db(sqlite_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url},
           "schedule": {**OFF, "backup": "* * * * * *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    store = tmp_path / "backups"
    store.mkdir()
    scheduler = start_scheduler(config, "--no-catch-up")
    assert wait_for(lambda: _job_events(scheduler.events(), "backup", "success"), 15, 0.1), (
        scheduler.log()
    )
    with local_lock(store, "backup run"):  # a one-shot run holding the lock for 2.5 s
        time.sleep(2.5)
        busy = _job_events(scheduler.events(), "backup", "busy")
        assert busy, scheduler.log()
        assert scheduler.status("backup")["exit_code"] == 75  # type: ignore[index]
    assert wait_for(lambda: scheduler.status("backup")["result"] == "success", 5, 0.1)  # type: ignore[index]
    # real one-shot runs while the scheduler keeps going: each one runs or reports busy
    codes = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-m", "emrops", "--config", str(config), "backup", "run", "--json"],
            capture_output=True, text=True, cwd=tmp_path,
        )  # fmt: skip
        codes.append(run.returncode)
        if run.returncode == 75:
            assert "is locked: backup run by pid" in run.stderr
    assert set(codes) <= {0, 75}
    assert scheduler.stop() == 0
    result = cli("--config", str(config), "backup", "verify", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    verified = json.loads(result.stdout)
    scheduled = _job_events(scheduler.events(), "backup", "success")
    assert len(verified) == len(scheduled) + codes.count(0)
    assert all(v["ok"] for v in verified)


def test_sigterm_lets_the_running_job_finish(tmp_path: Path, pg_url: str, start_scheduler) -> None:
    """SIGTERM during a backup: no new runs, the running backup completes and is published."""
    import psycopg

    init_db(pg_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": pg_url},
           "schedule": {**OFF, "backup": "0 2 * * *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as blocker:
        # pg_dump (and the row counts) wait for this lock: the backup is held mid-run
        blocker.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        scheduler = start_scheduler(config)  # the daily backup is overdue: it starts at once
        assert wait_for(lambda: "overdue" in scheduler.log(), 20, 0.1), scheduler.log()
        time.sleep(1.0)
        scheduler.proc.send_signal(signal.SIGTERM)
        assert wait_for(lambda: "SIGTERM received" in scheduler.log(), 10, 0.1)
        time.sleep(1.0)
        assert scheduler.proc.poll() is None  # still waiting for the backup
        assert scheduler.status("backup") is None
        blocker.rollback()
    assert scheduler.stop() == 0
    status = scheduler.status("backup")
    assert status is not None and status["result"] == "success", scheduler.log()
    assert (tmp_path / "backups" / status["backup_id"] / "manifest.json").is_file()
    messages = [e["msg"] for e in scheduler.events()]
    assert messages.index(next(m for m in messages if "SIGTERM received" in m)) < messages.index(
        next(m for m in messages if m.startswith("job backup (tick"))
    )
    assert messages[-1] == "scheduler stopped"
