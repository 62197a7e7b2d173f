"""`schedule run` against hostile conditions: SIGHUP, a job still running at its next tick,
and schedules written for other cron dialects."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psycopg
import pytest

from emrops.errors import UsageError
from emrops.schedule import cron
from tests.schedule.conftest import OFF, init_db, wait_for, write_config


def test_sighup_stops_the_scheduler_cleanly(
    tmp_path: Path, sqlite_url: str, start_scheduler
) -> None:
    # SIGHUP (the terminal closed, `kill -HUP`) ended the process on the spot: a running job
    # killed half-way, exit 129, and the heartbeat left "running" for health to misread
    init_db(sqlite_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url},
           "schedule": {**OFF, "backup": "0 2 * * *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    scheduler = start_scheduler(config, "--no-catch-up")
    assert wait_for(lambda: (scheduler.status_dir / "heartbeat.json").exists(), 15, 0.1)
    assert scheduler.stop(signal.SIGHUP) == 0, scheduler.log()
    messages = [e["msg"] for e in scheduler.events()]
    assert "SIGHUP received: stopping (running jobs finish first)" in messages
    assert messages[-1] == "scheduler stopped"
    beat = json.loads((scheduler.status_dir / "heartbeat.json").read_text())
    assert beat["state"] == "stopped"


def test_a_tick_while_the_job_still_runs_is_skipped_and_said_in_the_log_format(
    tmp_path: Path, pg_url: str, start_scheduler
) -> None:
    # APScheduler's own "Execution of job ... skipped: maximum number of running instances
    # reached" went to stderr as plain text through logging's last resort, in a JSON log
    init_db(pg_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": pg_url},
           "schedule": {**OFF, "backup": "* * * * * *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")  # pg_dump waits for it
        scheduler = start_scheduler(config, "--no-catch-up")

        def skipped() -> list[dict]:
            return [e for e in scheduler.events() if e.get("result") == "skipped"]

        assert wait_for(lambda: len(skipped()) >= 2, 20, 0.2), scheduler.log()
        conn.rollback()
    assert wait_for(
        lambda: any(e.get("result") == "success" for e in scheduler.events()), 30, 0.2
    ), scheduler.log()
    assert scheduler.stop(signal.SIGTERM) == 0
    lines = scheduler.log().splitlines()
    assert all(line.startswith("{") for line in lines), [
        line for line in lines if not line.startswith("{")
    ]
    first = skipped()[0]
    assert first["level"] == "warning" and first["job"] == "backup"
    assert first["msg"].startswith("job backup is still running: its tick at ")
    assert first["msg"].endswith(" is skipped (runs never overlap)")
    # one backup at a time: every run that started finished before the next one started
    runs = [e for e in scheduler.events() if e.get("job") == "backup" and "tick" in e]
    assert runs and all(e["result"] in ("success", "skipped") for e in runs)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "CRON_TZ=Europe/Berlin 30 2 * * *",
            "schedules are UTC: a CRON_TZ= or TZ= prefix is not supported",
        ),
        ("TZ=America/New_York 0 2 * * *", "a CRON_TZ= or TZ= prefix is not supported"),
        (
            "0 2 * * * 2026",
            "6 fields are read with the seconds first (second minute hour day month weekday)",
        ),
        ("0 0 2 * * * *", "expected 5 fields (or 6 with the seconds first), not 7"),
        ("0 2 *", "expected 5 fields (or 6 with the seconds first), not 3"),
    ],
)
def test_other_cron_dialects_get_a_clear_error(expression: str, message: str) -> None:
    # a timezone prefix failed as 'Unrecognized expression "CRON_TZ=..." for field "second"';
    # a year field as "invalid weekday field '2026'"
    with pytest.raises(UsageError) as err:
        cron.parse(expression)
    assert message in err.value.message + " " + (err.value.hint or "")


def test_a_dst_day_in_utc_fires_once_per_tick() -> None:
    # schedules are UTC: 02:30 on Europe's spring-forward and fall-back days is one tick each
    from datetime import UTC, datetime

    schedule = cron.parse("30 2 * * *")
    assert schedule is not None
    for day in (datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 10, 24, 12, tzinfo=UTC)):
        fires = cron.next_fire_times(schedule, 3, day)
        assert [f.day for f in fires] == [day.day + 1, day.day + 2, day.day + 3]
        assert all((f.hour, f.minute) == (2, 30) for f in fires)


def test_a_second_scheduler_on_the_same_status_folder_is_refused(
    tmp_path: Path, sqlite_url: str, start_scheduler
) -> None:
    # the second one ran every backup again right after the first (the store lock only stops
    # runs that overlap) and shared its heartbeat; started at the same moment, one of them
    # died on the other's write probe: "cannot write the scheduler's status files"
    init_db(sqlite_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url},
           "schedule": {**OFF, "backup": "*/2 * * * * *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    both = [start_scheduler(config, "--no-catch-up", name=n) for n in ("first", "second")]
    assert wait_for(lambda: any(s.proc.poll() is not None for s in both), 20, 0.1)
    loser = next(s for s in both if s.proc.poll() is not None)
    winner = next(s for s in both if s is not loser)
    assert loser.proc.returncode == 75, loser.log()
    error = loser.events()[-1]
    assert error["message"].startswith(
        f"another scheduler is running with the status folder {winner.status_dir}"
    )
    assert wait_for(
        lambda: len([e for e in winner.events() if e.get("result") == "success"]) >= 2, 20, 0.1
    ), winner.log()
    assert winner.proc.poll() is None
    assert winner.stop(signal.SIGTERM) == 0
    assert not [e for e in loser.events() if e.get("job")]


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"misfire_grace": "0s"}, "schedule.misfire_grace of 0 s is shorter than a second"),
        ({"misfire_grace": "500ms"}, "schedule.misfire_grace of 0.5 s is shorter than a second"),
        ({"keep_daily": -1}, "schedule.keep_daily (from file {config}) must not be negative: -1"),
        (
            {"keep_last": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0},
            "keep_monthly are all 0: the rotate job would keep nothing",
        ),
    ],
)
def test_bad_scheduler_settings_are_refused_at_start_naming_the_setting(
    cli, tmp_path: Path, sqlite_url: str, schedule: dict, message: str
) -> None:
    # misfire_grace 0s: "unexpected TypeError: misfire_grace_time must be either None or a
    # positive integer"; a negative or all-zero keep_*: the scheduler started and the rotate
    # job failed at every run naming `backup rotate`'s --keep-* flags
    init_db(sqlite_url)
    config = write_config(tmp_path, **{"": {"db_url": sqlite_url}, "schedule": schedule})
    result = cli("schedule", "run", "--no-catch-up")
    assert result.exit_code == 2, result.stderr
    assert message.format(config=config) in result.stderr and "unexpected" not in result.stderr
    if "keep" in message:  # the backup job still runs; only rotate is refused
        assert cli("schedule", "run-job", "backup").exit_code == 0
        rotate = cli("schedule", "run-job", "rotate")
        assert rotate.exit_code == 2 and message.format(config=config) in rotate.stderr


def run_on_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """``python -m emrops ARGS`` with stdout and stderr on a pseudo-terminal."""
    import os
    import pty
    import select
    import subprocess
    import sys

    master, slave = pty.openpty()
    drop = ("CI", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("EMROPS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emrops", *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**env, "COLUMNS": "250"},
    )
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        try:
            chunk = os.read(master, 65536) if ready else b""
        except OSError:
            chunk = b""
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=10), out.decode("utf-8", "replace")


def test_schedule_show_on_a_terminal_prints_status_text_inert(
    cli, tmp_path: Path, sqlite_url: str
) -> None:
    # a status file's text (an error, a hand edit) was read as rich markup: "unexpected
    # MarkupError", and a folder named "st[prod]" lost its "[prod]"
    init_db(sqlite_url)
    config = write_config(
        tmp_path, **{"": {"db_url": sqlite_url}, "schedule": {"status_dir": "st[prod]"}}
    )
    assert cli("schedule", "run-job", "backup").exit_code == 0
    status = tmp_path / "st[prod]" / "backup.json"
    record = json.loads(status.read_text())
    status.write_text(json.dumps({**record, "detail": "bad [/x] \x1b[2J", "result": "odd[/]"}))
    code, text = run_on_terminal(["--config", str(config), "schedule", "show"], tmp_path)
    assert code == 0, text
    assert "unexpected" not in text and "\x1b[2J" not in text
    assert "odd[/]" in text and "bad [/x] \\x1b[2J" in text
    assert "/st[prod]" in text  # the title (wrapped) names the folder as it is
