"""Schedules: cron semantics (Sunday is 0 and 7), APScheduler agrees with croniter."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime

import pytest
from croniter import croniter

from emrops.errors import UsageError
from emrops.schedule import cron

START = datetime(2026, 11, 25, 13, 37, 11, tzinfo=UTC)  # a Wednesday

EXPRESSIONS = [
    "0 2 * * *",
    "30 2 * * *",
    "0 4 * * 0",
    "0 4 * * 7",
    "0 4 * * sun",
    "15 3 * * 1-5",
    "0 6 * * */2",
    "0 0 * * 5-7",
    "*/15 9-17 * * mon,wed,fri",
    "0 0 1 * *",
    "0 12 1,15 jan,jul *",
    "@daily",
    "@weekly",
    "@yearly",
    "0 0 29 2 *",  # leap days only
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_apscheduler_fires_when_cron_would(expression: str) -> None:
    """The weekday trap (APScheduler 3's from_crontab counts 0 as Monday) is gone: the trigger
    emrops builds fires at exactly the times croniter (cron's semantics) gives."""
    schedule = cron.parse(expression)
    assert schedule is not None
    ours = cron.next_fire_times(schedule, 12, START)
    reference = croniter(cron.MACROS.get(expression, expression), START)
    expected = [reference.get_next(datetime) for _ in range(12)]
    assert ours == expected


def test_sunday_is_zero_and_seven() -> None:
    for expression in ("0 4 * * 0", "0 4 * * 7"):
        schedule = cron.parse(expression)
        assert schedule is not None
        fires = cron.next_fire_times(schedule, 3, START)
        assert [f.strftime("%a %H:%M") for f in fires] == ["Sun 04:00"] * 3


def test_seconds_field_and_latest_tick() -> None:
    schedule = cron.parse("*/5 * * * * *")
    assert schedule is not None and schedule.has_seconds
    assert cron.next_fire_times(schedule, 2, START) == [
        START.replace(second=15),
        START.replace(second=20),
    ]
    assert schedule.latest_at_or_before(START) == START.replace(second=10)
    assert schedule.latest_at_or_before(START.replace(second=15)) == START.replace(second=15)
    with pytest.raises(UsageError, match="seconds field: cron cannot run it"):
        _ = schedule.crontab


@pytest.mark.parametrize("word", ["off", "", "OFF", "none"])
def test_off(word: str) -> None:
    assert cron.parse(word) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 2 * *", "expected 5 fields"),
        ("0 2 1 * mon", "restricts both the day of month and the weekday"),
        ("61 2 * * *", "invalid schedule"),
        ("0 2 * * funday", "invalid weekday field"),
        ("0 2 * * 8", "invalid weekday field"),
        # valid fields, no such date: was "unexpected CroniterBadDateError" from `schedule show`
        ("* * 31 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("@reboot", "unknown macro"),
    ],
)
def test_invalid(expression: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        cron.parse(expression)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize("expression", [e for e in EXPRESSIONS if not e.startswith("@")])
def test_on_calendar_matches_cron(expression: str) -> None:
    """systemd's own parser gives the same next times for the OnCalendar= emrops writes."""
    schedule = cron.parse(expression)
    assert schedule is not None
    result = subprocess.run(
        ["systemd-analyze", "calendar", "--iterations=5", schedule.on_calendar(),
         f"--base-time={START.strftime('%Y-%m-%d %H:%M:%S')} UTC"],
        capture_output=True, text=True, env={"TZ": "UTC", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = [
        line.split(":", 1)[1].strip()
        for line in result.stdout.splitlines()
        if "Next elapse" in line or line.strip().startswith("Iter.")
    ]
    expected = [
        f.strftime("%a %Y-%m-%d %H:%M:%S UTC") for f in cron.next_fire_times(schedule, 5, START)
    ]
    assert seen == expected
