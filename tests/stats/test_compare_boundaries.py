"""Boundary tests for the regression verdict: each condition at its edge."""

from __future__ import annotations

import math

import pytest

from emrops.errors import UsageError
from emrops.stats.compare import (
    Better,
    Comparison,
    MetricDelta,
    Series,
    Verdict,
    check_threshold,
    compare,
    compare_series,
    relative_change,
)


def tput(*values: float) -> Series:
    return Series.of(values, Better.HIGHER)


def lat(*values: float) -> Series:
    return Series.of(values, Better.LOWER)


def test_worse_exactly_by_the_threshold_is_unchanged() -> None:
    d = compare_series("ops", tput(100), tput(90), 0.1)
    assert d.worse_by == 0.1 and d.verdict is Verdict.UNCHANGED


def test_worse_exactly_by_the_spread_is_noise() -> None:
    d = compare_series("ops", tput(90, 100, 110), tput(80, 80, 80), 0.1)
    assert d.spread == 0.2 and d.worse_by == 0.2
    assert d.verdict is Verdict.NOISE


def test_improved_needs_both_threshold_and_spread() -> None:
    # better beyond the threshold but within the spread: unchanged, not improved
    within = compare_series("ops", tput(50, 100, 150), tput(130, 130, 130), 0.1)
    assert within.verdict is Verdict.UNCHANGED
    # better exactly by the threshold: unchanged
    edge = compare_series("ops", tput(100), tput(110), 0.1)
    assert -edge.worse_by == pytest.approx(0.1) and edge.verdict is Verdict.UNCHANGED
    # better beyond both: improved, for either direction
    assert compare_series("ops", tput(100), tput(111), 0.1).verdict is Verdict.IMPROVED
    assert compare_series("p95", lat(100), lat(89), 0.1).verdict is Verdict.IMPROVED
    # better exactly by the spread (beyond the threshold): unchanged
    spread_edge = compare_series("ops", tput(90, 100, 110), tput(120, 120, 120), 0.1)
    assert spread_edge.spread == 0.2 and spread_edge.verdict is Verdict.UNCHANGED


def test_latency_direction_signs() -> None:
    d = compare_series("p95", lat(100), lat(120), 0.1)
    assert d.change == pytest.approx(0.2) and d.worse_by == pytest.approx(0.2)
    assert d.verdict is Verdict.REGRESSED
    t = compare_series("ops", tput(100), tput(120), 0.1)
    assert t.worse_by == pytest.approx(-0.2)


def test_single_repeat_has_no_spread_two_repeats_do() -> None:
    assert tput(5).spread == 0.0
    assert tput(90, 110).spread == 0.2
    assert tput(7, 7).spread == 0.0


def test_spread_around_a_zero_median() -> None:
    assert tput(0, 0).spread == 0.0
    assert math.isinf(tput(-1, 0, 1).spread)
    assert tput(-110, -90).spread == 0.2  # |median|


def test_central_overrides_the_median() -> None:
    s = Series.of([1, 2, 3], Better.LOWER, central=10.0)
    assert s.center == 10.0 and Series.of([1, 2, 3], Better.LOWER).center == 2.0
    with pytest.raises(ValueError):
        Series.of([1.0], Better.LOWER, central=math.inf)
    with pytest.raises(ValueError):
        Series.of([math.inf], Better.LOWER)


def test_relative_change_edges() -> None:
    assert relative_change(0, 0) == 0.0
    assert relative_change(0, 5) == math.inf
    assert relative_change(0, -5) == -math.inf
    assert relative_change(-10, -5) == 0.5
    assert relative_change(10, 15) == 0.5


def test_threshold_edges() -> None:
    check_threshold(0.0)
    for bad in (-1e-9, math.inf, math.nan):
        with pytest.raises(UsageError) as info:
            check_threshold(bad)
        assert info.value.message == f"invalid regression threshold {bad!r}"
    with pytest.raises(UsageError):
        compare_series("x", tput(1), tput(1), -0.5)
    zero = compare_series("x", tput(100), tput(99), 0.0)
    assert zero.verdict is Verdict.REGRESSED  # any worsening, with no spread, at threshold 0


def test_direction_mismatch_message() -> None:
    with pytest.raises(UsageError) as info:
        compare_series("ops", tput(1), lat(1), 0.1)
    assert info.value.message == "metric 'ops' has different directions in baseline and result"


def test_compare_order_and_missing_new_fields() -> None:
    c = compare({"b": tput(2), "a": lat(3)}, {"z": tput(1), "a": lat(3), "b": tput(2)}, 0.1)
    assert [d.name for d in c.deltas] == ["b", "a", "z"]
    missing = compare({"gone": lat(4)}, {}, 0.1).deltas[0]
    assert (missing.baseline, missing.result, missing.change, missing.spread) == (
        4.0,
        None,
        None,
        0.0,
    )
    assert missing.verdict is Verdict.MISSING and missing.better is Better.LOWER
    new = compare({}, {"fresh": tput(5)}, 0.1).deltas[0]
    assert (new.baseline, new.result, new.verdict, new.better) == (
        None,
        5.0,
        Verdict.NEW,
        Better.HIGHER,
    )


def test_as_dict_rounding_and_infinities() -> None:
    d = MetricDelta("x", Better.LOWER, 1.0, 2.0, 1.23456789, math.inf, 0.5, Verdict.REGRESSED)
    assert d.as_dict() == {
        "name": "x",
        "better": "lower",
        "baseline": 1.0,
        "result": 2.0,
        "change": 1.234568,
        "worse_by": None,
        "spread": 0.5,
        "verdict": "regressed",
    }
    c = Comparison(0.1, [d])
    assert c.as_dict()["max_regression"] == 0.1 and c.as_dict()["regressed"] is True
    assert c.as_dict()["regressions"] == ["x"]
    assert Comparison(0.1).regressed is False


def test_error_messages() -> None:
    from emrops.stats.compare import latency_series

    with pytest.raises(ValueError, match=r"^a series needs at least one value$"):
        Series.of([], Better.HIGHER)
    with pytest.raises(ValueError, match=r"^series values must be finite numbers, got \(nan,\)$"):
        Series.of([math.nan], Better.HIGHER)
    with pytest.raises(ValueError, match=r"^central value must be finite, got inf$"):
        Series.of([1.0], Better.HIGHER, central=math.inf)
    with pytest.raises(ValueError, match=r"^latency_series needs at least one histogram$"):
        latency_series([], 95)
    with pytest.raises(UsageError) as info:
        check_threshold(-1.0)
    assert info.value.hint == "use e.g. --max-regression 10%"


def test_delta_carries_both_centers_and_its_worse_by() -> None:
    d = compare_series("ops", tput(100), tput(90), 0.05)
    assert (d.baseline, d.result) == (100.0, 90.0)
    assert d.as_dict()["worse_by"] == 0.1 and d.as_dict()["change"] == -0.1


def test_a_missing_metric_does_not_stop_the_comparison() -> None:
    c = compare({"gone": tput(1), "kept": tput(1)}, {"kept": tput(1)}, 0.1)
    assert [(d.name, d.verdict) for d in c.deltas] == [
        ("gone", Verdict.MISSING),
        ("kept", Verdict.UNCHANGED),
    ]
    assert c.max_regression == 0.1
    new = compare({}, {"fresh": tput(5)}, 0.1).deltas[0]
    assert new.spread == 0.0 and new.as_dict()["spread"] == 0.0


def test_relative_change_from_zero_to_a_small_positive_is_infinite() -> None:
    assert relative_change(0, 0.5) == math.inf
