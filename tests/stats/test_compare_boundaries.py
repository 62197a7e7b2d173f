"""Verdicts at their edges: each test kills mutants of compare.py that test_compare.py let
survive (`make mutation`): a change exactly at the threshold or exactly at the spread, the
conditions of IMPROVED, the single-repeat spread, and the numbers a comparison reports.

The values are chosen so every relative change is exact in binary floating point
(x/100 with x a multiple of 25), so "exactly at the threshold" is really exact.

(One file: the two boundary sets written in parallel for #19, merged without duplicates.)"""

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
    latency_series,
    relative_change,
)


def tput(*values: float) -> Series:
    return Series.of(values, Better.HIGHER)


def lat(*values: float) -> Series:
    return Series.of(values, Better.LOWER)


@pytest.mark.parametrize(
    ("result", "threshold", "verdict"),
    [
        (75, 0.25, Verdict.UNCHANGED),  # worse by exactly the threshold: not beyond it
        (75, 0.24, Verdict.REGRESSED),
        (125, 0.25, Verdict.UNCHANGED),  # better by exactly the threshold
        (125, 0.24, Verdict.IMPROVED),
        (100, 0.0, Verdict.UNCHANGED),  # a zero threshold: no change is still no change
        (101, 0.0, Verdict.IMPROVED),
        (99, 0.0, Verdict.REGRESSED),
    ],
)
def test_throughput_at_the_threshold(result: float, threshold: float, verdict: Verdict) -> None:
    # single repeats: no spread, only the threshold decides
    assert compare_series("ops", tput(100), tput(result), threshold).verdict is verdict


@pytest.mark.parametrize(
    ("result", "threshold", "verdict"),
    [
        (125, 0.25, Verdict.UNCHANGED),
        (125, 0.24, Verdict.REGRESSED),
        (75, 0.25, Verdict.UNCHANGED),
        (75, 0.24, Verdict.IMPROVED),
    ],
)
def test_latency_at_the_threshold(result: float, threshold: float, verdict: Verdict) -> None:
    assert compare_series("p95", lat(100), lat(result), threshold).verdict is verdict


def test_worse_by_exactly_the_spread_is_noise_and_beyond_it_regresses() -> None:
    base = tput(75, 100, 125)  # spread (125 - 75) / 100 = 0.5
    assert base.spread == 0.5
    at_spread = compare_series("ops", base, tput(50), 0.1)
    assert (at_spread.worse_by, at_spread.spread) == (0.5, 0.5)
    assert at_spread.verdict is Verdict.NOISE
    assert compare_series("ops", base, tput(25), 0.1).verdict is Verdict.REGRESSED
    # the spread of either side counts: here the result's
    assert compare_series("ops", tput(100), tput(25, 50, 75), 0.1).verdict is Verdict.NOISE


def test_improved_needs_both_the_threshold_and_the_spread() -> None:
    base = lat(75, 100, 125)  # spread 0.5
    # better by 0.5: beyond the threshold but not beyond the spread -> unchanged, not improved
    assert compare_series("p95", base, lat(50), 0.1).verdict is Verdict.UNCHANGED
    # better by 0.75: beyond both
    assert compare_series("p95", base, lat(25), 0.1).verdict is Verdict.IMPROVED
    # better by 0.75 but the threshold is 0.75: not beyond the threshold
    assert compare_series("p95", base, lat(25), 0.75).verdict is Verdict.UNCHANGED
    # better beyond the spread, within a larger threshold
    assert compare_series("p95", lat(100), lat(50), 0.5).verdict is Verdict.UNCHANGED
    # throughput, better by exactly the spread (0.5) and beyond the threshold: unchanged
    assert compare_series("ops", tput(75, 100, 125), tput(150), 0.1).verdict is Verdict.UNCHANGED
    assert compare_series("ops", tput(75, 100, 125), tput(175), 0.1).verdict is Verdict.IMPROVED
    # worse (never improved) however the threshold and spread compare
    assert compare_series("p95", lat(100), lat(150), 0.6).verdict is Verdict.UNCHANGED


def test_worse_by_is_signed_by_the_direction() -> None:
    slower = compare_series("p95", lat(100), lat(125), 0.1)
    assert (slower.change, slower.worse_by, slower.verdict) == (0.25, 0.25, Verdict.REGRESSED)
    faster = compare_series("ops", tput(100), tput(125), 0.1)
    assert (faster.change, faster.worse_by, faster.verdict) == (0.25, -0.25, Verdict.IMPROVED)


def test_the_spread_of_one_two_and_signed_repeats() -> None:
    assert tput(5).spread == 0.0  # a single repeat has no spread
    assert tput(0).spread == 0.0
    assert tput(4, 6).spread == 0.4  # two repeats are enough
    assert tput(4, 4).spread == 0.0
    assert tput(-20, -10, -30).spread == 1.0  # relative to |median|
    assert tput(0, 0, 0).spread == 0.0
    assert tput(-1, 0, 1).spread == math.inf  # spread around a zero median
    assert tput(-1, 0, 0, 1).spread == math.inf


def test_a_single_repeat_against_several_uses_the_other_spread() -> None:
    d = compare_series("ops", tput(100), tput(50, 75, 100), 0.1)
    assert d.spread == pytest.approx(2 / 3)
    assert d.worse_by == 0.25 and d.verdict is Verdict.NOISE


def test_center_is_the_median_unless_given() -> None:
    assert tput(1, 2, 10).center == 2.0
    assert tput(1, 2, 3, 10).center == 2.5
    assert Series.of([1, 2, 10], Better.LOWER, central=7.0).center == 7.0
    assert Series.of([1, 2, 10], Better.LOWER, central=0.0).center == 0.0
    d = compare_series("p95", Series.of([5], "lower", 10.0), Series.of([5], "lower", 20.0), 0.1)
    assert (d.baseline, d.result, d.change, d.verdict) == (10.0, 20.0, 1.0, Verdict.REGRESSED)


@pytest.mark.parametrize(
    ("baseline", "result", "change"),
    [
        (0, 0, 0.0),
        (0, 3, math.inf),
        (0, 0.5, math.inf),  # any rise from zero, however small
        (0, -3, -math.inf),
        (0, -0.5, -math.inf),
        (100, 125, 0.25),
        (100, 75, -0.25),
        (-100, -75, 0.25),  # relative to |baseline|: up is positive
        (-100, -125, -0.25),
    ],
)
def test_relative_change(baseline: float, result: float, change: float) -> None:
    assert relative_change(baseline, result) == change


def test_a_change_from_a_zero_baseline_is_infinitely_large() -> None:
    d = compare_series("ops", tput(0), tput(-1), 0.1)
    assert d.change == -math.inf and d.verdict is Verdict.REGRESSED
    assert compare_series("errors", lat(0), lat(-1), 0.1).verdict is Verdict.IMPROVED


def test_a_delta_as_json() -> None:
    d = compare_series("ops", tput(3), tput(2), 0.1)
    assert d.as_dict() == {
        "name": "ops",
        "better": "higher",
        "baseline": 3.0,
        "result": 2.0,
        "change": round(-1 / 3, 6),
        "worse_by": round(1 / 3, 6),
        "spread": 0.0,
        "verdict": "regressed",
    }
    infinite = compare_series("errors", lat(0), lat(1), 0.1).as_dict()
    assert (infinite["change"], infinite["worse_by"]) == (None, None)
    assert infinite["better"] == "lower"


def test_an_infinite_worse_by_and_rounding_in_json_and_a_regressed_comparison() -> None:
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
    assert c.regressed is True
    assert (c.as_dict()["regressed"], c.as_dict()["regressions"]) == (True, ["x"])


def test_missing_and_new_deltas_carry_what_one_side_has() -> None:
    c = compare({"gone": lat(4, 6)}, {"added": tput(7)}, 0.1)
    assert c.deltas == [
        MetricDelta("gone", Better.LOWER, 5.0, None, None, None, 0.0, Verdict.MISSING),
        MetricDelta("added", Better.HIGHER, None, 7.0, None, None, 0.0, Verdict.NEW),
    ]
    assert c.as_dict() == {
        "max_regression": 0.1,
        "regressed": False,
        "regressions": [],
        "metrics": [
            {
                "name": "gone",
                "better": "lower",
                "baseline": 5.0,
                "result": None,
                "change": None,
                "worse_by": None,
                "spread": 0.0,
                "verdict": "missing",
            },
            {
                "name": "added",
                "better": "higher",
                "baseline": None,
                "result": 7.0,
                "change": None,
                "worse_by": None,
                "spread": 0.0,
                "verdict": "new",
            },
        ],
    }


def test_compare_keeps_the_baseline_order_then_new_metrics() -> None:
    c = compare(
        {"b": tput(1), "gone": tput(1), "a": tput(1)},
        {"new": tput(1), "a": tput(1), "b": tput(1)},
        0.1,
    )
    # a missing metric does not stop the comparison of the ones after it
    assert [(d.name, d.verdict) for d in c.deltas] == [
        ("b", Verdict.UNCHANGED),
        ("gone", Verdict.MISSING),
        ("a", Verdict.UNCHANGED),
        ("new", Verdict.NEW),
    ]
    assert Comparison(0.1).deltas == [] and not Comparison(0.1).regressed
    noisy = compare({"ops": tput(75, 100, 125)}, {"ops": tput(50)}, 0.1)
    assert noisy.deltas[0].verdict is Verdict.NOISE and not noisy.regressed  # noise never fails


@pytest.mark.parametrize("bad", [-0.01, math.nan, math.inf, -math.inf])
def test_a_bad_threshold_is_a_usage_error(bad: float) -> None:
    for call in (
        lambda: check_threshold(bad),
        lambda: compare({}, {}, bad),
        lambda: compare_series("m", tput(1), tput(1), bad),
    ):
        with pytest.raises(UsageError) as info:
            call()
        assert info.value.message == f"invalid regression threshold {bad!r}"
        assert info.value.hint == "use e.g. --max-regression 10%"


def test_zero_threshold_is_valid() -> None:
    check_threshold(0.0)
    assert compare({}, {}, 0.0).max_regression == 0.0


def test_series_and_direction_errors_say_what_is_wrong() -> None:
    with pytest.raises(UsageError) as info:
        compare_series("p95", tput(1), lat(1), 0.1)
    assert info.value.message == "metric 'p95' has different directions in baseline and result"
    with pytest.raises(ValueError, match="^a series needs at least one value$"):
        Series.of([], Better.HIGHER)
    with pytest.raises(
        ValueError, match=r"^series values must be finite numbers, got \(1\.0, inf\)"
    ):
        Series.of([1, math.inf], Better.HIGHER)
    with pytest.raises(ValueError, match="^central value must be finite, got nan$"):
        Series.of([1], Better.HIGHER, math.nan)
    with pytest.raises(ValueError, match="^central value must be finite, got inf$"):
        Series.of([1], Better.HIGHER, math.inf)
    with pytest.raises(ValueError, match=r"^series values must be finite numbers, got \(nan,\)$"):
        Series.of([math.nan], Better.HIGHER)
    with pytest.raises(ValueError, match="^latency_series needs at least one histogram$"):
        latency_series([], 95)
