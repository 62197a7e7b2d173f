"""Mergeable latency histograms (HdrHistogram), shared by ``benchmark`` and ``loadtest``.

Rules this module enforces, so every caller follows them:

* latencies are recorded as integer **microseconds** (1 µs .. 1 hour, 3 significant digits);
* per-client (per-thread, per-process) histograms are **merged**, never averaged: percentiles
  of a merged histogram are the percentiles of all recorded values;
* a histogram travels between processes as :meth:`LatencyHistogram.encode` text (the
  HdrHistogram "histoblob", base64 of the compressed V2 encoding, readable by the Java and C
  ports) and comes back with :meth:`LatencyHistogram.decode`.

Example::

    h = LatencyHistogram()
    h.record_seconds(0.0042)           # 4.2 ms
    total = merge_all([h, other])      # e.g. one per client
    total.summary().p95_ms
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hdrh.histogram import HdrHistogram

from emrops.errors import UsageError

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: anything slower is clamped (and counted) here
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 95.0, 99.0)


@dataclass(frozen=True)
class LatencySummary:
    """Count and percentiles of one histogram, in microseconds (``*_ms`` helpers for display)."""

    count: int
    min_us: int
    p50_us: int
    p95_us: int
    p99_us: int
    max_us: int
    mean_us: float

    @property
    def p50_ms(self) -> float:
        return self.p50_us / 1000.0

    @property
    def p95_ms(self) -> float:
        return self.p95_us / 1000.0

    @property
    def p99_ms(self) -> float:
        return self.p99_us / 1000.0

    @property
    def max_ms(self) -> float:
        return self.max_us / 1000.0

    def as_dict(self) -> dict[str, Any]:
        """JSON form: integer microseconds plus the mean, as stored in result files."""
        return {
            "count": self.count,
            "min_us": self.min_us,
            "p50_us": self.p50_us,
            "p95_us": self.p95_us,
            "p99_us": self.p99_us,
            "max_us": self.max_us,
            "mean_us": round(self.mean_us, 1),
        }


class LatencyHistogram:
    """An HdrHistogram of latencies in microseconds. Not thread-safe: use one per client."""

    def __init__(self, _hdr: HdrHistogram | None = None) -> None:
        self._hdr = _hdr or HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        self.clamped = 0  # values above HIGHEST_US, recorded as HIGHEST_US
        # the library's mean walks every bucket in Python (~70 ms); keep an exact sum instead
        self._sum_us = 0

    # recording ---------------------------------------------------------------------------
    def record_us(self, value_us: float, count: int = 1) -> None:
        """Record one latency in microseconds (rounded; below 1 µs counts as 1 µs)."""
        if value_us != value_us or value_us < 0:  # NaN or negative: a clock bug, not a latency
            raise ValueError(f"latency must be a non-negative number, got {value_us!r}")
        value = max(LOWEST_US, int(round(value_us)))
        if value > HIGHEST_US:
            self.clamped += count
            value = HIGHEST_US
        self._hdr.record_value(value, count)
        self._sum_us += value * count

    def record_seconds(self, seconds: float) -> None:
        """Record one latency given in seconds (e.g. a ``time.perf_counter()`` difference)."""
        self.record_us(seconds * 1_000_000.0)

    # combining ---------------------------------------------------------------------------
    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """Add every value of ``other`` into this histogram; returns self."""
        self._hdr.add(other._hdr)
        self.clamped += other.clamped
        self._sum_us += other._sum_us
        return self

    def copy(self) -> LatencyHistogram:
        out = LatencyHistogram()
        out.merge(self)
        return out

    # reading -----------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return int(self._hdr.get_total_count())

    def percentile_us(self, percentile: float) -> int:
        """The value at ``percentile`` (0..100) in µs; 0 for an empty histogram."""
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"percentile must be within 0..100, got {percentile}")
        if self.count == 0:
            return 0
        if percentile >= 100.0:
            return self.max_us
        return int(self._hdr.get_value_at_percentile(percentile))

    @property
    def max_us(self) -> int:
        return 0 if self.count == 0 else int(self._hdr.get_max_value())

    @property
    def min_us(self) -> int:
        return 0 if self.count == 0 else int(self._hdr.get_min_value())

    def summary(self) -> LatencySummary:
        """count, min, p50, p95, p99, max (µs) and mean; all zero when nothing was recorded."""
        if self.count == 0:
            return LatencySummary(0, 0, 0, 0, 0, 0, 0.0)
        values = self._hdr.get_percentile_to_value_dict(list(PERCENTILES))  # one pass
        p50, p95, p99 = (int(values[p]) for p in PERCENTILES)
        return LatencySummary(
            count=self.count,
            min_us=self.min_us,
            p50_us=p50,
            p95_us=p95,
            p99_us=p99,
            max_us=self.max_us,
            mean_us=self._sum_us / self.count,
        )

    # transport ---------------------------------------------------------------------------
    def encode(self) -> str:
        """The histogram as HdrHistogram base64 text, for result files and inter-process pipes."""
        return self._hdr.encode().decode("ascii")

    @classmethod
    def decode(cls, text: str | bytes) -> LatencyHistogram:
        """Rebuild a histogram from :meth:`encode` output; raises UsageError if it is not one."""
        raw = text.encode("ascii") if isinstance(text, str) else text
        if not raw:
            return cls()
        try:
            hdr = HdrHistogram.decode(raw)
        except Exception as exc:  # the library raises assorted errors on garbage
            raise UsageError(
                f"not an encoded HdrHistogram: {type(exc).__name__}",
                hint="pass the text produced by LatencyHistogram.encode()",
            ) from None
        out = cls()
        out._hdr.add(hdr)  # normalise range and precision to ours
        if out.count:  # the encoding holds no sum: rebuild it from the buckets (slow, once)
            out._sum_us = int(round(hdr.get_mean_value() * out.count))
        return out

    def __repr__(self) -> str:
        s = self.summary()
        return f"LatencyHistogram(count={s.count}, p50={s.p50_us}us, p99={s.p99_us}us)"


def merge_all(histograms: Iterable[LatencyHistogram]) -> LatencyHistogram:
    """One histogram holding every value of ``histograms`` (an empty one for none)."""
    total = LatencyHistogram()
    for histogram in histograms:
        total.merge(histogram)
    return total


def decode_and_merge(encoded: Iterable[str]) -> LatencyHistogram:
    """Merge histograms received as :meth:`LatencyHistogram.encode` text (e.g. from workers)."""
    return merge_all(LatencyHistogram.decode(text) for text in encoded)
