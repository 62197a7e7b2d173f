"""Boundary tests for the rotation planner (the mutants a mutation trial left alive)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from emrops.backup.retention import Candidate, Policy, plan
from emrops.errors import UsageError

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)  # a Monday


def v(i: int, days: float) -> Candidate:
    """A verified backup, built without naming ``pinned`` (its default is under test)."""
    return Candidate(f"b{i}", T0 + timedelta(days=days), True)


def test_policy_defaults_are_zero_and_empty() -> None:
    p = Policy()
    assert (p.keep_last, p.keep_daily, p.keep_weekly, p.keep_monthly) == (0, 0, 0, 0)
    assert p.empty is True


@pytest.mark.parametrize("field", ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"])
def test_any_single_rule_makes_the_policy_non_empty(field: str) -> None:
    assert Policy(**{field: 1}).empty is False


@pytest.mark.parametrize("field", ["keep_last", "keep_daily", "keep_weekly", "keep_monthly"])
def test_zero_is_allowed_and_minus_one_is_refused_naming_the_flag(field: str) -> None:
    Policy(**{field: 0})
    with pytest.raises(UsageError) as info:
        Policy(**{field: -1})
    assert info.value.message == f"--{field.replace('_', '-')} must not be negative"


def test_candidates_are_not_pinned_by_default() -> None:
    assert Candidate("x", T0, True).pinned is False
    result = plan([v(1, 0), v(2, 1)], Policy(keep_last=1))
    assert [(d.id, d.keep) for d in result] == [("b2", True), ("b1", False)]
    assert result[1].reasons == ("matches no keep rule (verified)",)


def test_keep_last_keeps_exactly_n_with_reasons() -> None:
    backups = [v(i, i) for i in range(4)]
    result = {d.id: d for d in plan(backups, Policy(keep_last=2))}
    assert result["b3"].reasons == ("newest verified", "last")
    assert result["b2"].reasons == ("last",)
    assert not result["b1"].keep and not result["b0"].keep


def test_keep_daily_one_keeps_only_the_newest_day() -> None:
    backups = [v(1, 0), v(2, 1), v(3, 1.1)]
    result = {d.id: d for d in plan(backups, Policy(keep_daily=1))}
    assert result["b3"].reasons == ("newest verified", "daily 2026-03-03")
    assert not result["b2"].keep and not result["b1"].keep


def test_iso_week_year_at_a_year_boundary_and_month_key() -> None:
    # Friday 1 January 2027 belongs to ISO week 53 of 2026
    late = Candidate("w", datetime(2027, 1, 1, 12, tzinfo=UTC), True)
    early = Candidate("e", datetime(2026, 12, 20, 12, tzinfo=UTC), True)
    result = {d.id: d for d in plan([late, early], Policy(keep_weekly=2, keep_monthly=2))}
    assert result["w"].reasons == ("newest verified", "weekly 2026-W53", "monthly 2027-01")
    assert result["e"].reasons == ("weekly 2026-W51", "monthly 2026-12")


def test_reasons_for_pinned_and_no_verified_backup() -> None:
    pinned = Candidate("p", T0, False, pinned=True)
    other = Candidate("o", T0 + timedelta(hours=1), False)
    result = {d.id: d.reasons for d in plan([pinned, other], Policy(keep_last=1))}
    assert result["p"] == ("pinned", "no verified backup yet")
    assert result["o"] == ("no verified backup yet",)


def test_newer_unverified_reason_and_output_is_newest_first() -> None:
    backups = [v(1, 0), Candidate("u", T0 + timedelta(days=2), False), v(2, 1)]
    result = plan(backups, Policy(keep_last=1))
    assert [d.id for d in result] == ["u", "b2", "b1"]
    assert result[0].reasons == ("newer than the newest verified (not verified yet)",)


def test_same_time_ties_break_on_id() -> None:
    a, b = Candidate("a", T0, True), Candidate("b", T0, True)
    result = plan([a, b], Policy(keep_last=1))
    assert [(d.id, d.keep) for d in result] == [("b", True), ("a", False)]


def test_decisions_carry_the_creation_time_and_the_zone_hint() -> None:
    from emrops.backup.retention import zone

    backups = [v(1, 0), v(2, 1)]
    result = plan(backups, Policy(keep_last=1))
    assert [d.created_at for d in result] == [T0 + timedelta(days=1), T0]
    with pytest.raises(UsageError) as info:
        zone("Mars/Olympus")
    assert info.value.message == "unknown time zone 'Mars/Olympus'"
    assert info.value.hint == "use an IANA name such as UTC or Europe/Berlin"
