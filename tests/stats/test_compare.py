"""Regression verdicts: threshold and run-to-run spread, per metric."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrops.errors import UsageError
from emrops.stats.compare import (
    Better,
    Series,
    Verdict,
    compare,
    compare_series,
    latency_series,
)
from emrops.stats.histogram import LatencyHistogram


def tput(*values: float) -> Series:
    return Series.of(values, Better.HIGHER)


def lat(*values: float) -> Series:
    return Series.of(values, Better.LOWER)


def test_throughput_drop_beyond_threshold_and_spread_regresses() -> None:
    d = compare_series("ops", tput(1000, 1010, 990), tput(800, 805, 795), 0.10)
    assert d.verdict is Verdict.REGRESSED
    assert d.worse_by == pytest.approx(0.2)
    assert d.change == pytest.approx(-0.2)


def test_latency_rise_beyond_threshold_and_spread_regresses() -> None:
    d = compare_series("p95", lat(10, 10, 10), lat(13, 13, 13), 0.10)
    assert d.verdict is Verdict.REGRESSED


def test_worse_but_within_spread_is_noise() -> None:
    # baseline repeats vary by 40 %, so a 20 % drop is not evidence
    d = compare_series("ops", tput(800, 1000, 1200), tput(800, 800, 800), 0.10)
    assert d.verdict is Verdict.NOISE
    assert d.spread == pytest.approx(0.4)


def test_improvement_and_small_changes() -> None:
    assert compare_series("ops", tput(100), tput(150), 0.1).verdict is Verdict.IMPROVED
    assert compare_series("ops", tput(100), tput(95), 0.1).verdict is Verdict.UNCHANGED
    assert compare_series("p99", lat(100), lat(50), 0.1).verdict is Verdict.IMPROVED


def test_missing_and_new_metrics_are_reported_not_regressions() -> None:
    c = compare({"a": tput(1), "b": tput(1)}, {"a": tput(1), "c": tput(1)}, 0.1)
    verdicts = {d.name: d.verdict for d in c.deltas}
    assert verdicts == {"a": Verdict.UNCHANGED, "b": Verdict.MISSING, "c": Verdict.NEW}
    assert not c.regressed
    assert c.as_dict()["regressions"] == []


def test_comparison_lists_regressions() -> None:
    c = compare({"ops": tput(100), "p95": lat(5)}, {"ops": tput(50), "p95": lat(5)}, 0.1)
    assert c.regressed and [d.name for d in c.regressions] == ["ops"]
    assert c.as_dict()["metrics"][0]["verdict"] == "regressed"


def test_zero_baseline() -> None:
    d = compare_series("errors", lat(0), lat(3), 0.1)
    assert d.verdict is Verdict.REGRESSED and d.as_dict()["change"] is None
    assert compare_series("errors", lat(0), lat(0), 0.1).verdict is Verdict.UNCHANGED


def test_bad_threshold_and_series() -> None:
    with pytest.raises(UsageError):
        compare({}, {}, -0.1)
    with pytest.raises(ValueError):
        Series.of([], Better.HIGHER)
    with pytest.raises(ValueError):
        Series.of([math.nan], Better.HIGHER)
    with pytest.raises(UsageError):
        compare_series("x", tput(1), lat(1), 0.1)


def test_latency_series_uses_the_merged_histogram() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for _ in range(99):
        a.record_us(1000)
        b.record_us(100_000)
    s = latency_series([a, b], 95)
    assert s.values[0] < 1010 and s.values[1] > 99_000
    assert s.central is not None and s.central > 99_000  # not the 50 ms an average would give


positive = st.floats(min_value=1.0, max_value=1e6, allow_nan=False)
repeats = st.lists(positive, min_size=1, max_size=5)
threshold = st.floats(min_value=0.0, max_value=1.0)


@given(repeats, threshold, st.sampled_from(list(Better)))
def test_identical_runs_never_regress(values: list[float], t: float, better: Better) -> None:
    s = Series.of(values, better)
    assert compare_series("m", s, s, t).verdict is Verdict.UNCHANGED


@given(repeats, repeats, threshold, st.sampled_from(list(Better)))
def test_regression_implies_beyond_threshold_and_spread(
    base: list[float], res: list[float], t: float, better: Better
) -> None:
    b, r = Series.of(base, better), Series.of(res, better)
    d = compare_series("m", b, r, t)
    if d.verdict is Verdict.REGRESSED:
        assert d.worse_by is not None and d.worse_by > t and d.worse_by > max(b.spread, r.spread)
    # swapping the sides turns a regression into an improvement when the spread is symmetric
    if d.verdict is Verdict.IMPROVED:
        assert d.worse_by is not None and d.worse_by < -t


@given(repeats, st.floats(min_value=1.5, max_value=10), st.sampled_from(list(Better)))
def test_scaling_every_repeat_worse_regresses(values: list[float], k: float, better: Better):
    base = Series.of(values, better)
    worse = [v / k for v in values] if better is Better.HIGHER else [v * k for v in values]
    d = compare_series("m", base, Series.of(worse, better), 0.2)
    # scaling keeps the relative spread; a change larger than it (and than 20 %) regresses
    expected = d.worse_by is not None and d.worse_by > max(0.2, base.spread)
    assert (d.verdict is Verdict.REGRESSED) == expected
