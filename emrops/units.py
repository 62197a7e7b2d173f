"""One parser for the quantities users type: durations, rates, percentages, sizes.

Every parser raises :class:`emrops.errors.UsageError` naming the bad value and
showing a valid example, so all commands report bad input the same way.
"""

from __future__ import annotations

import math
import re

from emrops.errors import UsageError

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(ms|s|m|h)?\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}


def parse_duration(text: str, *, what: str = "duration") -> float:
    """Parse ``90s``, ``26h``, ``1h30m``, ``250ms`` or a bare number of seconds.

    Returns seconds as a float. Raises UsageError for anything else, negatives included.
    """
    raw = str(text).strip().lower()
    if not raw:
        raise UsageError(f"empty {what}", hint="use a duration such as 90s, 15m, 26h or 1h30m")
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if value < 0 or not math.isfinite(value):
            raise UsageError(f"invalid {what} {text!r}: must be a positive number of seconds")
        return value
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise UsageError(
            f"invalid {what} {text!r}",
            hint="use a number with a unit (ms, s, m, h, d, w), e.g. 90s, 15m, 26h or 1h30m",
        )
    return total


def format_duration(seconds: float) -> str:
    """Render seconds compactly: 0.25 -> '250ms', 5400 -> '1h30m'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    out = []
    rest = int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


def parse_rate(text: str) -> float:
    """Parse ``200/s``, ``30/m`` or ``5000/h`` into events per second."""
    match = _RATE.fullmatch(str(text))
    if not match:
        raise UsageError(
            f"invalid rate {text!r}", hint="use a count per unit, e.g. 200/s, 30/m or 5000/h"
        )
    count = float(match.group(1))
    unit = match.group(2) or "s"
    per_second = count / _DURATION_UNITS[unit]
    if per_second <= 0:
        raise UsageError(f"invalid rate {text!r}: must be above zero", hint="e.g. 200/s")
    return per_second


def parse_percent(text: str) -> float:
    """Parse ``10%`` or ``0.5%`` into a fraction (0.10, 0.005)."""
    match = _PERCENT.fullmatch(str(text))
    if not match:
        raise UsageError(
            f"invalid percentage {text!r}", hint="use a number followed by %, e.g. 10%"
        )
    return float(match.group(1)) / 100.0


def parse_size(text: str) -> int:
    """Parse ``512MB``, ``2GiB``, ``10k`` or a byte count into bytes."""
    match = _SIZE.fullmatch(str(text))
    if not match:
        raise UsageError(
            f"invalid size {text!r}", hint="use a number with a unit, e.g. 512MB or 2GiB"
        )
    unit = (match.group(2) or "").lower()
    binary = "i" in unit
    base = unit[:1] if unit not in ("", "b") else unit
    factor = _SIZE_UNITS[base]
    if binary:
        factor = 1024 ** {"k": 1, "m": 2, "g": 3, "t": 4}[base]
    return int(float(match.group(1)) * factor)
