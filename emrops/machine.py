"""How many CPUs this process can really use.

``os.cpu_count()`` is the host's count. In a container it overstates what the process gets: a
Kubernetes pod limited to 2 CPUs on a 64-core node, or ``docker run --cpus 2``, still sees 64.
Sizing thread pools, zstd workers or parallel COPY jobs by it then starts 64 of each: memory
grows with every worker, PostgreSQL connections run out, and the quota throttles them all.

:func:`usable_cores` is the smallest of: the CPU affinity (``taskset``, cpusets) and the cgroup
CPU quota (v2 ``cpu.max`` of this process's cgroup and its parents, or v1
``cpu.cfs_quota_us``/``cpu.cfs_period_us``), rounded up. ``EMROPS_CPUS`` overrides it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_COPY_JOBS = 8  # parallel COPY streams: SQLite reads and the target's WAL saturate first
MAX_ZSTD_THREADS = 8  # each zstd worker buffers its own jobs (tens of MB)


def usable_cores(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path | None = None) -> int:
    """CPUs this process can use (at least 1); see the module docstring."""
    forced = os.environ.get("EMROPS_CPUS", "").strip()
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    quota = cgroup_quota(cgroup_root, proc_cgroup or Path("/proc/self/cgroup"))
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_quota(root: Path, proc_cgroup: Path) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (2.5 = 250 ms per 100 ms), the
    tightest along its path; None when there is none or it cannot be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hid, controllers, path = parts
        rel = path.strip().lstrip("/")
        if controllers == "":  # cgroup v2: cpu.max in the group and each parent
            unified = root / "unified"  # hybrid hosts mount v2 there, beside the v1 ones
            top = unified if unified.is_dir() else root
            quotas += _walk(top / rel, top, _v2)
        elif "cpu" in controllers.split(","):  # cgroup v1
            for mount in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += _walk(mount / rel, mount, _v1)
                    break
    return min(quotas) if quotas else None


def _walk(start: Path, top: Path, read: Callable[[Path], float | None]) -> list[float]:
    found: list[float] = []
    here = start
    while True:
        value = read(here)
        if value is not None:
            found.append(value)
        if here == top or top not in here.parents:
            return found
        here = here.parent


def _v2(group: Path) -> float | None:
    try:
        quota, _, period = (group / "cpu.max").read_text().strip().partition(" ")
        if quota == "max":
            return None
        return int(quota) / int(period or 100_000)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _v1(group: Path) -> float | None:
    try:
        quota = int((group / "cpu.cfs_quota_us").read_text())
        period = int((group / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return quota / period


def default_jobs() -> int:
    """Parallel COPY/verify jobs when the user gives none: usable cores, at most
    :data:`MAX_COPY_JOBS` (each job is also a PostgreSQL connection)."""
    return min(usable_cores(), MAX_COPY_JOBS)
