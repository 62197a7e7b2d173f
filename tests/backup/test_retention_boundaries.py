"""The rotation planner at its edges: each test kills mutants of retention.py that
test_retention.py let survive (`make mutation`), so a flipped default, an inverted
``Policy.empty`` or a reworded reason cannot slip through.

(One file: the two boundary sets written in parallel for #19, merged without duplicates.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emrops.backup.retention import Candidate, Decision, Policy, plan, zone
from emrops.errors import UsageError

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def by_id(decisions: list[Decision]) -> dict[str, Decision]:
    return {d.id: d for d in decisions}


def test_policy_defaults_are_zero() -> None:
    p = Policy()
    assert (p.keep_last, p.keep_daily, p.keep_weekly, p.keep_monthly) == (0, 0, 0, 0)


def test_a_candidate_is_not_pinned_unless_asked() -> None:
    # the default of `pinned` decides whether an unpinned backup can ever be deleted
    assert Candidate("a", at(0), True).pinned is False
    old, new = Candidate("old", at(0), True), Candidate("new", at(1), True)
    result = plan([old, new], Policy(keep_last=1))
    assert [(d.id, d.keep) for d in result] == [("new", True), ("old", False)]
    assert result[1].reasons == ("matches no keep rule (verified)",)


@pytest.mark.parametrize(
    ("policy", "empty"),
    [
        (Policy(), True),
        (Policy(0, 0, 0, 0), True),
        (Policy(keep_last=1), False),
        (Policy(keep_daily=1), False),
        (Policy(keep_weekly=1), False),
        (Policy(keep_monthly=1), False),
        (Policy(2, 3, 4, 5), False),
    ],
)
def test_policy_is_empty_only_when_every_count_is_zero(policy: Policy, empty: bool) -> None:
    # `backup rotate` refuses an empty policy; inverted, it would refuse every real one
    assert policy.empty is empty


@pytest.mark.parametrize("name", ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"])
def test_a_negative_count_is_named_as_its_flag(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(UsageError) as info:
        Policy(**{name: -1})
    assert info.value.message == f"{flag} must not be negative"
    Policy(**{name: 0})  # zero is the boundary that is allowed


def test_an_unknown_zone_says_what_to_write() -> None:
    with pytest.raises(UsageError) as info:
        zone("Mars/Olympus")
    assert info.value.message == "unknown time zone 'Mars/Olympus'"
    assert info.value.hint == "use an IANA name such as UTC or Europe/Berlin"


def test_every_reason_is_spelled_out() -> None:
    backups = [
        Candidate("pinned-old", at(0), True, pinned=True),
        Candidate("dropped-verified", at(1), True),
        Candidate("dropped-unverified", at(2), False),
        Candidate("last", at(3), True),
        Candidate("newest", at(4), True),
        Candidate("pending", at(5), False),
    ]
    result = plan(backups, Policy(keep_last=2))
    assert [d.id for d in result] == [
        "pending",
        "newest",
        "last",
        "dropped-unverified",
        "dropped-verified",
        "pinned-old",
    ]
    assert [(d.id, d.keep, d.reasons) for d in result] == [
        ("pending", True, ("newer than the newest verified (not verified yet)",)),
        ("newest", True, ("newest verified", "last")),
        ("last", True, ("last",)),
        ("dropped-unverified", False, ("matches no keep rule (not verified)",)),
        ("dropped-verified", False, ("matches no keep rule (verified)",)),
        ("pinned-old", True, ("pinned",)),
    ]
    # a decision carries the backup's own time, kept or not, and a real bool
    for d, b in zip(result, sorted(backups, key=lambda b: b.created_at, reverse=True), strict=True):
        assert d.created_at == b.created_at
        assert isinstance(d.keep, bool)


def test_without_a_verified_backup_every_one_says_why() -> None:
    backups = [Candidate("a", at(0), False, pinned=True), Candidate("b", at(1), False)]
    assert [(d.id, d.keep, d.reasons) for d in plan(backups, Policy(keep_last=5))] == [
        ("b", True, ("no verified backup yet",)),
        ("a", True, ("pinned", "no verified backup yet")),
    ]


def test_keep_last_counts_exactly_n_verified() -> None:
    backups = [Candidate(f"v{i}", at(i), True) for i in range(5)]
    backups.append(Candidate("u", at(2.5), False))  # unverified: never one of the last N
    result = by_id(plan(backups, Policy(keep_last=3)))
    assert {k for k, d in result.items() if d.keep} == {"v4", "v3", "v2"}
    assert result["u"].keep is False


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_bucket_count_keeps_exactly_that_many_buckets(count: int) -> None:
    # one backup a day for five days: keep-daily N keeps exactly N of them
    backups = [Candidate(f"d{i}", at(24 * i), True) for i in range(5)]
    result = plan(backups, Policy(keep_daily=count))
    assert [d.id for d in result if d.keep] == [f"d{i}" for i in range(4, 4 - count, -1)]


def test_keep_daily_one_keeps_only_the_newest_of_the_newest_day() -> None:
    backups = [
        Candidate("b1", at(0), True),
        Candidate("b2", at(24), True),
        Candidate("b3", at(26.4), True),  # same UTC day as b2, later
    ]
    result = by_id(plan(backups, Policy(keep_daily=1)))
    assert result["b3"].reasons == ("newest verified", "daily 2026-03-02")
    assert not result["b2"].keep and not result["b1"].keep


def test_iso_week_year_at_a_year_boundary_and_month_key() -> None:
    # Friday 1 January 2027 belongs to ISO week 53 of 2026
    late = Candidate("w", datetime(2027, 1, 1, 12, tzinfo=UTC), True)
    early = Candidate("e", datetime(2026, 12, 20, 12, tzinfo=UTC), True)
    result = by_id(plan([late, early], Policy(keep_weekly=2, keep_monthly=2)))
    assert result["w"].reasons == ("newest verified", "weekly 2026-W53", "monthly 2027-01")
    assert result["e"].reasons == ("weekly 2026-W51", "monthly 2026-12")


def test_same_time_ties_break_on_id() -> None:
    a, b = Candidate("a", T0, True), Candidate("b", T0, True)
    result = plan([a, b], Policy(keep_last=1))
    assert [(d.id, d.keep) for d in result] == [("b", True), ("a", False)]
