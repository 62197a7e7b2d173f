"""Is the load generator itself the bottleneck? One rule for ``benchmark`` and ``loadtest``.

A client (benchmark) or generator (loadtest) whose processes used more than CPU_LIMIT of the
CPU they could use measured itself, not the system under test (k6's guidance: flag a generator
above ~80 % CPU). The share is

    client CPU-seconds / (wall seconds x min(processes, cores))

so N busy processes on fewer than N cores count as saturated too.
"""

from __future__ import annotations

from emrops.machine import usable_cores

CPU_LIMIT = 0.80
__all__ = ["CPU_LIMIT", "cpu_share", "saturated", "usable_cores"]


def cpu_share(cpu_seconds: float, wall_s: float, processes: int, cores: int | None = None) -> float:
    """The fraction of the CPU available to ``processes`` processes that they used."""
    if wall_s <= 0 or processes < 1:
        return 0.0
    return cpu_seconds / (wall_s * min(processes, cores or usable_cores()))


def saturated(share: float) -> bool:
    """True when a CPU share (see :func:`cpu_share`) is above CPU_LIMIT."""
    return share > CPU_LIMIT
