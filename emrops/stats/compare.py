"""Baseline-versus-result regression statistics, shared by ``benchmark`` and ``loadtest``.

A metric is a series of values, one per repeat (run), plus the value that summarises the
series (``central``). For throughput the central value is the median of the repeats; for a
latency percentile it should be the percentile of the histogram **merged** over all repeats
(:func:`latency_series` does that): percentiles are never averaged.

A metric *regressed* only when both hold:

1. it got worse by more than ``max_regression`` (relative to the baseline's central value), and
2. it got worse by more than the run-to-run spread, the larger of the two sides' relative
   ranges ``(max - min) / median`` over the repeats (zero with a single repeat).

Getting worse beyond the threshold but within the spread is ``noise``; getting better beyond
both is ``improved``; anything else is ``unchanged``. A metric only one side has is
``missing`` (dropped from the result) or ``new``; neither counts as a regression.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from emrops.errors import UsageError
from emrops.stats.histogram import LatencyHistogram, merge_all


class Better(StrEnum):
    """Which direction is an improvement."""

    HIGHER = "higher"  # throughput
    LOWER = "lower"  # latency, errors


class Verdict(StrEnum):
    UNCHANGED = "unchanged"
    IMPROVED = "improved"
    REGRESSED = "regressed"
    NOISE = "noise"  # worse beyond the threshold, but within the run-to-run spread
    MISSING = "missing"  # in the baseline only
    NEW = "new"  # in the result only


@dataclass(frozen=True)
class Series:
    """One metric's values over the repeats of a run, and its summary value."""

    values: tuple[float, ...]
    better: Better
    central: float | None = None  # default: the median of ``values``

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a series needs at least one value")
        if any(not math.isfinite(v) for v in self.values):
            raise ValueError(f"series values must be finite numbers, got {self.values}")
        if self.central is not None and not math.isfinite(self.central):
            raise ValueError(f"central value must be finite, got {self.central}")

    @classmethod
    def of(cls, values: Iterable[float], better: Better | str, central: float | None = None):
        return cls(tuple(float(v) for v in values), Better(better), central)

    @property
    def center(self) -> float:
        return float(statistics.median(self.values)) if self.central is None else self.central

    @property
    def spread(self) -> float:
        """Relative range of the repeats, ``(max - min) / |median|``; 0 for one repeat."""
        if len(self.values) < 2:
            return 0.0
        median = abs(statistics.median(self.values))
        width = max(self.values) - min(self.values)
        if median == 0:
            return 0.0 if width == 0 else math.inf
        return width / median


@dataclass(frozen=True)
class MetricDelta:
    """The comparison of one metric."""

    name: str
    better: Better
    baseline: float | None
    result: float | None
    change: float | None  # relative change result vs baseline (+0.12 = 12 % higher)
    worse_by: float | None  # change signed so that positive means worse
    spread: float  # the run-to-run spread used as the noise floor
    verdict: Verdict

    def as_dict(self) -> dict[str, Any]:
        def num(x: float | None) -> float | None:
            return None if x is None else (round(x, 6) if math.isfinite(x) else None)

        return {
            "name": self.name,
            "better": self.better.value,
            "baseline": num(self.baseline),
            "result": num(self.result),
            "change": num(self.change),
            "worse_by": num(self.worse_by),
            "spread": num(self.spread),
            "verdict": self.verdict.value,
        }


@dataclass(frozen=True)
class Comparison:
    """Every metric's delta; ``regressed`` is what decides the exit code (3)."""

    max_regression: float
    deltas: list[MetricDelta] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.verdict is Verdict.REGRESSED]

    @property
    def regressed(self) -> bool:
        return bool(self.regressions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_regression": self.max_regression,
            "regressed": self.regressed,
            "regressions": [d.name for d in self.regressions],
            "metrics": [d.as_dict() for d in self.deltas],
        }


def relative_change(baseline: float, result: float) -> float:
    """``(result - baseline) / |baseline|``; 0 when both are 0, ±inf from a zero baseline."""
    if baseline == 0:
        if result == 0:
            return 0.0
        return math.inf if result > 0 else -math.inf
    return (result - baseline) / abs(baseline)


def compare_series(name: str, baseline: Series, result: Series, max_regression: float):
    """The verdict for one metric (see the module doc for the rule)."""
    check_threshold(max_regression)
    if baseline.better is not result.better:
        raise UsageError(f"metric {name!r} has different directions in baseline and result")
    change = relative_change(baseline.center, result.center)
    worse_by = -change if baseline.better is Better.HIGHER else change
    spread = max(baseline.spread, result.spread)
    if worse_by > max_regression and worse_by > spread:
        verdict = Verdict.REGRESSED
    elif worse_by > max_regression:
        verdict = Verdict.NOISE
    elif -worse_by > max_regression and -worse_by > spread:
        verdict = Verdict.IMPROVED
    else:
        verdict = Verdict.UNCHANGED
    return MetricDelta(
        name, baseline.better, baseline.center, result.center, change, worse_by, spread, verdict
    )


def compare(
    baseline: Mapping[str, Series], result: Mapping[str, Series], max_regression: float
) -> Comparison:
    """Compare every metric by name, in the baseline's order, then metrics new in the result."""
    check_threshold(max_regression)
    deltas: list[MetricDelta] = []
    for name, base in baseline.items():
        res = result.get(name)
        if res is None:
            deltas.append(
                MetricDelta(name, base.better, base.center, None, None, None, 0.0, Verdict.MISSING)
            )
            continue
        deltas.append(compare_series(name, base, res, max_regression))
    for name, res in result.items():
        if name not in baseline:
            deltas.append(
                MetricDelta(name, res.better, None, res.center, None, None, 0.0, Verdict.NEW)
            )
    return Comparison(max_regression, deltas)


def check_threshold(max_regression: float) -> None:
    if not (math.isfinite(max_regression) and max_regression >= 0):
        raise UsageError(
            f"invalid regression threshold {max_regression!r}", hint="use e.g. --max-regression 10%"
        )


def latency_series(repeats: Sequence[LatencyHistogram], percentile: float) -> Series:
    """A latency-percentile series: per-repeat percentiles for the spread, and the percentile of
    the histogram merged over all repeats as the central value (never an average)."""
    if not repeats:
        raise ValueError("latency_series needs at least one histogram")
    values = [h.percentile_us(percentile) for h in repeats]
    central = float(merge_all(repeats).percentile_us(percentile))
    return Series.of(values, Better.LOWER, central)
