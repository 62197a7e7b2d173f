"""Cron expressions (UTC) for scheduled jobs, with APScheduler's traps taken out.

Accepted: the 5 standard fields (``minute hour day month weekday``), the macros ``@hourly``,
``@daily``, ``@weekly``, ``@monthly``, ``@yearly``, or 6 fields with the seconds first
(``*/5 * * * * *``, for tests and sub-minute schedules; cron itself cannot express those).
``off`` disables a job.

Two traps of APScheduler 3.x are handled here, not left to users:

* weekdays: ``CronTrigger.from_crontab`` counts 0 as Monday (agronholm/apscheduler#286); cron
  counts 0 (and 7) as Sunday. Weekday numbers are translated to names before APScheduler sees
  them, so ``0 4 * * 0`` runs on Sundays, as in crontab.
* cron runs a job when *either* a restricted day of month *or* a restricted weekday matches;
  APScheduler requires both. An expression restricting both is refused rather than run
  differently from what a crontab reader expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.triggers.cron import CronTrigger
from croniter import CroniterBadDateError, croniter

from emrops.errors import UsageError

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
HINT = "use 5 cron fields in UTC, e.g. '0 2 * * *' (02:00 daily) or '0 4 * * sun', or 'off'"


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the expression as written and its fields (weekdays as names)."""

    expression: str
    second: str
    minute: str
    hour: str
    day: str
    month: str
    weekday: str  # "*" or names: "sun,wed"

    @property
    def has_seconds(self) -> bool:
        return self.second != "0"

    @property
    def crontab(self) -> str:
        """The 5 crontab fields; UsageError when the schedule needs seconds."""
        if self.has_seconds:
            raise UsageError(
                f"schedule {self.expression!r} has a seconds field: cron cannot run it",
                hint="use a 5-field expression for cron and systemd timers",
            )
        return f"{self.minute} {self.hour} {self.day} {self.month} {self.weekday}"

    def _croniter_expr(self) -> str:
        # croniter takes the seconds as an optional 6th field at the end
        return f"{self.minute} {self.hour} {self.day} {self.month} {self.weekday} {self.second}"

    def trigger(self) -> CronTrigger:
        """The APScheduler trigger, in UTC."""
        return CronTrigger(
            second=self.second,
            minute=self.minute,
            hour=self.hour,
            day=self.day,
            month=self.month,
            day_of_week=self.weekday,
            timezone=UTC,
        )

    def next_after(self, moment: datetime) -> datetime:
        """The first fire time strictly after ``moment``."""
        return croniter(self._croniter_expr(), moment).get_next(datetime)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The newest fire time at or before ``moment``: the tick a run then belongs to."""
        moment = moment.replace(microsecond=0)
        return croniter(self._croniter_expr(), moment + timedelta(seconds=1)).get_prev(datetime)

    def on_calendar(self) -> str:
        """The same times as a systemd ``OnCalendar=`` value (explicit lists, UTC)."""
        fields = croniter(self._croniter_expr()).expanded
        minute, hour, day, month, weekday = fields[:5]
        second = fields[5] if len(fields) > 5 else [0]

        def join(values: list[object], width: int = 2) -> str:
            if values == ["*"]:
                return "*"
            return ",".join(f"{int(str(v)):0{width}d}" for v in values)

        days = ""
        if weekday != ["*"]:
            numbers = sorted({int(str(v)) % 7 for v in weekday})
            days = ",".join(DAY_NAMES[n].capitalize() for n in numbers) + " "
        date = f"*-{join(month)}-{join(day)}"
        return f"{days}{date} {join(hour)}:{join(minute)}:{join(second)} UTC"


def parse(expression: str) -> Schedule | None:
    """Parse a schedule; None for ``off``. Raises UsageError naming the problem."""
    text = " ".join(str(expression).split())
    if text.lower() in ("", "off", "none", "disabled"):
        return None
    if text.startswith("@") and text.lower() not in MACROS:
        raise UsageError(
            f"invalid schedule {expression!r}: unknown macro",
            hint=f"use one of {', '.join(MACROS)}",
        )
    if text.split()[0].upper().startswith(("CRON_TZ=", "TZ=")):
        raise UsageError(
            f"invalid schedule {expression!r}: schedules are UTC: a CRON_TZ= or TZ= prefix "
            "is not supported",
            hint="write the time in UTC (no daylight-saving gaps or repeats: each tick runs "
            "once), e.g. 02:30 Berlin time is '30 1 * * *' in winter",
        )
    fields = MACROS.get(text.lower(), text).split()
    seconds_first = len(fields) == 6
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise UsageError(
            f"invalid schedule {expression!r}: expected 5 fields (or 6 with the seconds "
            f"first), not {len(fields)}",
            hint=HINT,
        )
    try:
        return _parse_fields(expression, text, fields)
    except UsageError as exc:
        if seconds_first:  # "0 2 * * * 2026" (a year, Quartz style) is not what it seems
            exc.hint = (
                "6 fields are read with the seconds first (second minute hour day month "
                "weekday); a year or a timezone field is not supported. " + HINT
            )
        raise


def _parse_fields(expression: str, text: str, fields: list[str]) -> Schedule:
    second, minute, hour, day, month, weekday = fields
    weekday = _weekday_names(weekday, expression)
    if day not in ("*", "?") and weekday != "*":
        raise UsageError(
            f"invalid schedule {expression!r}: it restricts both the day of month and the weekday",
            hint="cron runs when either matches, APScheduler when both do; restrict only one",
        )
    schedule = Schedule(text, second, minute, hour, day.replace("?", "*"), month, weekday)
    try:
        schedule.trigger()
        croniter(schedule._croniter_expr())
    except (ValueError, KeyError) as exc:
        raise UsageError(f"invalid schedule {expression!r}: {exc}", hint=HINT) from None
    try:  # e.g. the 31st of February: valid fields, no date (croniter gives up looking)
        schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC))
    except CroniterBadDateError:
        raise UsageError(
            f"invalid schedule {expression!r}: it never fires (no such date)",
            hint="check the day of month against the month (February has 28 or 29 days)",
        ) from None
    return schedule


def _weekday_names(field: str, expression: str) -> str:
    """Cron weekday field (0 or 7 = Sunday, names, ranges, steps) -> APScheduler names."""
    if field in ("*", "?"):
        return "*"
    chosen: set[int] = set()
    for token in field.lower().split(","):
        base, _, step_text = token.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                first, last = 0, 6
            elif "-" in base:
                a, b = base.split("-", 1)
                first, last = _day(a), _day(b)
                if last == 0 and b.strip() in ("7",):
                    last = 7
            else:
                first = last = _day(base)
                if step_text:
                    last = 6
            if step < 1 or first > last:
                raise ValueError
        except ValueError:
            raise UsageError(
                f"invalid weekday field {field!r} in schedule {expression!r}", hint=HINT
            ) from None
        chosen.update(n % 7 for n in range(first, last + 1, step))
    if chosen == set(range(7)):
        return "*"
    return ",".join(DAY_NAMES[n] for n in sorted(chosen))


def _day(text: str) -> int:
    text = text.strip()
    if text in DAY_NAMES:
        return DAY_NAMES.index(text)
    if text[:3] in DAY_NAMES and len(text) > 3:
        return DAY_NAMES.index(text[:3])
    number = int(text)
    if not 0 <= number <= 7:
        raise ValueError(text)
    return number % 7 if number != 7 else 0


def next_fire_times(
    schedule: Schedule, count: int, start: datetime | None = None
) -> list[datetime]:
    """The next ``count`` fire times by APScheduler's trigger (what `schedule run` will do)."""
    trigger = schedule.trigger()
    now = start or datetime.now(UTC)
    out: list[datetime] = []
    previous = None
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        if fire is None:
            break
        out.append(fire)
        previous = fire
        now = fire + timedelta(microseconds=1)
    return out
