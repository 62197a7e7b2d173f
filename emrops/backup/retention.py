"""The rotation planner: a pure function from backups and a policy to keep/delete decisions.

restic-style calendar buckets: ``--keep-daily 7`` keeps the newest backup of each of the 7
most recent days *that have a backup*; weeks are ISO weeks, boundaries are in an explicit
time zone (UTC by default). Only verified backups count toward a bucket. Whatever the
policy, these are always kept: pinned backups, the newest verified backup, and every backup
newer than it (not verified yet); with no verified backup at all, nothing is deleted.

Given ``now``, a backup dated more than FUTURE_SLACK after it (a writer with a wrong clock, or
a manifest changed by hand) is kept and set apart: it would otherwise be the "newest verified"
and take a "last" slot and a bucket, and the real backups those rules protect were deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from emrops.errors import UsageError

# Clocks of hosts writing one store may differ by this much without a backup counting as
# dated in the future.
FUTURE_SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class Candidate:
    id: str
    created_at: datetime  # aware
    verified: bool
    pinned: bool = False


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0

    def __post_init__(self) -> None:
        for name in ("keep_last", "keep_daily", "keep_weekly", "keep_monthly"):
            if getattr(self, name) < 0:
                raise UsageError(f"--{name.replace('_', '-')} must not be negative")

    @property
    def empty(self) -> bool:
        return not (self.keep_last or self.keep_daily or self.keep_weekly or self.keep_monthly)


@dataclass(frozen=True)
class Decision:
    id: str
    created_at: datetime
    keep: bool
    reasons: tuple[str, ...]


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}", hint="use an IANA name such as UTC or Europe/Berlin"
        ) from None


def plan(
    backups: Iterable[Candidate],
    policy: Policy,
    tz: ZoneInfo | None = None,
    now: datetime | None = None,
) -> list[Decision]:
    """Decisions for every backup, newest first. The result does not depend on input order."""
    tz = tz or ZoneInfo("UTC")
    ordered = sorted(backups, key=lambda b: (b.created_at, b.id), reverse=True)
    reasons: dict[str, list[str]] = {b.id: [] for b in ordered}
    future: set[str] = set()
    if now is not None:
        future = {b.id for b in ordered if b.created_at > now + FUTURE_SLACK}
        for b in ordered:
            if b.id in future:
                reasons[b.id].append("dated in the future (a wrong clock?); not counted")
    verified = [b for b in ordered if b.verified and b.id not in future]
    newest_verified = verified[0] if verified else None
    for b in ordered:
        if b.pinned:
            reasons[b.id].append("pinned")
        if b.id in future:
            continue
        if newest_verified is None:
            reasons[b.id].append("no verified backup yet")
        elif b is newest_verified:
            reasons[b.id].append("newest verified")
        elif (b.created_at, b.id) > (newest_verified.created_at, newest_verified.id):
            reasons[b.id].append("newer than the newest verified (not verified yet)")
    for b in verified[: policy.keep_last]:
        reasons[b.id].append("last")
    buckets = (
        ("daily", policy.keep_daily, lambda t: t.strftime("%Y-%m-%d")),
        (
            "weekly",
            policy.keep_weekly,
            lambda t: f"{t.isocalendar()[0]:04d}-W{t.isocalendar()[1]:02d}",
        ),
        ("monthly", policy.keep_monthly, lambda t: t.strftime("%Y-%m")),
    )
    for kind, count, key in buckets:
        seen: list[str] = []
        for b in verified:
            if len(seen) >= count:
                break
            bucket = key(b.created_at.astimezone(tz))
            if bucket not in seen:
                seen.append(bucket)
                reasons[b.id].append(f"{kind} {bucket}")
    out = []
    for b in ordered:
        why = reasons[b.id]
        if why:
            out.append(Decision(b.id, b.created_at, True, tuple(why)))
        else:
            state = "verified" if b.verified else "not verified"
            out.append(Decision(b.id, b.created_at, False, (f"matches no keep rule ({state})",)))
    return out
