"""The rotation planner: examples, then properties (Hypothesis)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrops.backup.retention import Candidate, Policy, plan, zone
from emrops.errors import UsageError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def c(i: int, hours: float, verified: bool = True, pinned: bool = False) -> Candidate:
    return Candidate(f"b{i:04d}", T0 + timedelta(hours=hours), verified, pinned)


def kept(decisions) -> set[str]:  # type: ignore[no-untyped-def]
    return {d.id for d in decisions if d.keep}


def test_keep_daily_counts_only_days_that_have_a_backup() -> None:
    # days 0, 1, 5, 6 have two backups each; keep-daily 3 keeps the newest of days 6, 5 and 1
    backups = [
        c(i, day * 24 + h)
        for i, (day, h) in enumerate(
            [(0, 1), (0, 2), (1, 1), (1, 2), (5, 1), (5, 2), (6, 1), (6, 2)]
        )
    ]
    result = plan(backups, Policy(keep_daily=3))
    assert kept(result) == {"b0007", "b0005", "b0003"}
    reasons = {d.id: d.reasons for d in result}
    assert reasons["b0003"] == ("daily 2026-01-02",)
    assert "newest verified" in reasons["b0007"]


def test_time_zone_moves_day_boundaries() -> None:
    # 23:30 UTC and 00:30 UTC next day: two UTC days, one day in America/New_York (UTC-5)
    backups = [c(1, 23.5), c(2, 24.5)]
    assert kept(plan(backups, Policy(keep_daily=2))) == {"b0001", "b0002"}
    assert kept(plan(backups, Policy(keep_daily=2), ZoneInfo("America/New_York"))) == {"b0002"}


def test_unverified_do_not_count_and_newer_than_newest_verified_stay() -> None:
    backups = [
        c(1, 1),
        c(2, 2, verified=False),
        c(3, 3),
        c(4, 4, verified=False),
        c(5, 5, verified=False),
    ]
    result = {d.id: d for d in plan(backups, Policy(keep_last=1))}
    assert result["b0003"].keep and "newest verified" in result["b0003"].reasons
    assert result["b0004"].keep and result["b0005"].keep  # newer than the newest verified
    assert not result["b0001"].keep and not result["b0002"].keep
    assert result["b0002"].reasons == ("matches no keep rule (not verified)",)


def test_nothing_deleted_without_a_verified_backup_and_pins_stay() -> None:
    backups = [c(1, 1, verified=False), c(2, 2, verified=False)]
    assert kept(plan(backups, Policy(keep_last=1))) == {"b0001", "b0002"}
    pinned = [c(1, 1, pinned=True), c(2, 2), c(3, 3)]
    assert kept(plan(pinned, Policy(keep_last=1))) == {"b0001", "b0003"}


def test_weekly_and_monthly_buckets() -> None:
    backups = [c(i, i * 24 * 10) for i in range(10)]  # one every 10 days
    result = plan(backups, Policy(keep_weekly=2, keep_monthly=2))
    reasons = {d.id: d.reasons for d in result if d.keep}
    assert reasons["b0009"] == ("newest verified", "weekly 2026-W14", "monthly 2026-04")
    assert reasons["b0008"] == ("weekly 2026-W12", "monthly 2026-03")  # Sun 22 March
    assert set(reasons) == {"b0009", "b0008"}


def test_bad_inputs() -> None:
    with pytest.raises(UsageError, match="must not be negative"):
        Policy(keep_last=-1)
    with pytest.raises(UsageError, match="unknown time zone"):
        zone("Mars/Olympus")


backup_lists = st.lists(
    st.builds(
        lambda minutes, verified, pinned: (minutes, verified, pinned),
        st.integers(0, 60 * 24 * 400),
        st.booleans(),
        st.booleans(),
    ),
    max_size=40,
).map(
    lambda items: [
        Candidate(f"id{n:03d}", T0 + timedelta(minutes=m), v, p)
        for n, (m, v, p) in enumerate(items)
    ]
)
policies = st.builds(
    Policy, st.integers(0, 5), st.integers(0, 10), st.integers(0, 6), st.integers(0, 6)
)
zones = st.sampled_from(
    ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Auckland"]
)


@settings(max_examples=300, deadline=None)
@given(backup_lists, policies, zones)
def test_properties(backups: list[Candidate], policy: Policy, tz: str) -> None:
    result = plan(backups, policy, ZoneInfo(tz))
    keep = kept(result)
    assert {d.id for d in result} == {b.id for b in backups}
    verified = sorted((b for b in backups if b.verified), key=lambda b: (b.created_at, b.id))
    # never removes the newest verified, nor anything newer than it, nor a pinned backup
    if verified:
        newest = verified[-1]
        assert newest.id in keep
        assert all(
            b.id in keep for b in backups if (b.created_at, b.id) > (newest.created_at, newest.id)
        )
    else:
        assert keep == {b.id for b in backups}
    assert all(b.id in keep for b in backups if b.pinned)
    # idempotent: planning again over what is left deletes nothing more
    again = plan([b for b in backups if b.id in keep], policy, ZoneInfo(tz))
    assert kept(again) == keep
    # independent of input order
    shuffled = list(backups)
    random.Random(len(backups)).shuffle(shuffled)
    assert plan(shuffled, policy, ZoneInfo(tz)) == result
    assert plan(list(reversed(backups)), policy, ZoneInfo(tz)) == result
