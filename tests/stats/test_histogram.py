"""The shared latency histogram: recording, merging, percentiles and encoding."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emrops.errors import UsageError
from emrops.stats.histogram import (
    HIGHEST_US,
    LatencyHistogram,
    LatencySummary,
    decode_and_merge,
    merge_all,
)

latencies = st.lists(st.integers(min_value=1, max_value=10_000_000), min_size=1, max_size=300)


def _hist(values: list[int]) -> LatencyHistogram:
    h = LatencyHistogram()
    for v in values:
        h.record_us(v)
    return h


def _close(measured: int, exact: int) -> bool:
    # 3 significant digits: within 0.1 % (plus one unit for tiny values)
    return abs(measured - exact) <= exact * 0.001 + 1


@given(latencies)
def test_percentiles_are_ordered_and_bounded(values: list[int]) -> None:
    s = _hist(values).summary()
    assert s.count == len(values)
    assert s.min_us <= s.p50_us <= s.p95_us <= s.p99_us <= s.max_us
    assert _close(s.max_us, max(values))
    assert _close(s.min_us, min(values))


@given(latencies)
def test_median_matches_the_exact_order_statistic(values: list[int]) -> None:
    s = _hist(values).summary()
    ordered = sorted(values)
    # HdrHistogram's percentile is the value at rank ceil(p/100 * n)
    rank = max(1, -(-len(ordered) * 50 // 100))
    assert _close(s.p50_us, ordered[rank - 1])


@given(st.lists(latencies, min_size=1, max_size=5))
def test_merge_equals_recording_everything_in_one(groups: list[list[int]]) -> None:
    merged = merge_all(_hist(g) for g in groups)
    together = _hist([v for g in groups for v in g])
    assert merged.summary() == together.summary()


@settings(max_examples=30, deadline=None)  # decode rebuilds the mean: ~70 ms
@given(st.lists(latencies, min_size=1, max_size=4))
def test_encode_decode_round_trip_and_merge(groups: list[list[int]]) -> None:
    hists = [_hist(g) for g in groups]
    for h in hists:
        _same(LatencyHistogram.decode(h.encode()).summary(), h.summary())
    _same(decode_and_merge(h.encode() for h in hists).summary(), merge_all(hists).summary())


def _same(decoded: LatencySummary, original: LatencySummary) -> None:
    # the encoding keeps the buckets, not the exact sum: the mean comes back to 3 digits
    assert dataclasses.replace(decoded, mean_us=0) == dataclasses.replace(original, mean_us=0)
    assert decoded.mean_us == pytest.approx(original.mean_us, rel=0.002, abs=1)


def test_merged_percentile_is_not_the_average_of_percentiles() -> None:
    fast = _hist([1_000] * 99)  # 99 ops at 1 ms
    slow = _hist([100_000] * 99)  # 99 ops at 100 ms
    merged = merge_all([fast, slow])
    assert _close(merged.percentile_us(95), 100_000)  # the average would say ~50 ms
    assert _close(merged.percentile_us(25), 1_000)


def test_empty_histogram_summary_is_zero_and_round_trips() -> None:
    h = LatencyHistogram()
    assert h.summary().count == 0 and h.summary().p99_us == 0
    assert LatencyHistogram.decode(h.encode()).count == 0
    assert LatencyHistogram.decode("").count == 0


def test_mean_is_exact() -> None:
    assert _hist([1, 2, 3, 1_000_000]).summary().mean_us == pytest.approx(250_001.5)


def test_seconds_recording_and_clamping() -> None:
    h = LatencyHistogram()
    h.record_seconds(0.0042)
    assert _close(h.percentile_us(50), 4200)
    assert h.summary().p50_ms == pytest.approx(4.2, rel=0.002)
    h.record_us(HIGHEST_US * 10)
    assert h.clamped == 1 and h.count == 2
    h.record_us(0.2)  # sub-microsecond counts as 1 µs
    assert h.min_us == 1


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_invalid_latency_is_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram().record_us(bad)


def test_decoding_garbage_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="not an encoded HdrHistogram"):
        LatencyHistogram.decode("this is not a histogram")


def test_percentile_range_checked() -> None:
    with pytest.raises(ValueError):
        _hist([5]).percentile_us(101)
