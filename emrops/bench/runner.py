"""The closed-loop runner: N client threads, each with one pooled connection at a time.

This module runs the clients of one process; :mod:`emrops.bench.procs` spreads a cell's clients
over several processes (each running this) and merges what they measured.

Every client runs its workload as fast as it can (closed loop, pgbench's model for maximum
throughput). All clients start together; operations that *start* during the warm-up are
discarded, operations that start in the measured window are timed into the client's own
HdrHistogram per operation, and the histograms are merged afterwards.

Failed operations are counted (``errors``; ``busy`` for SQLite "database is locked"/busy and
PostgreSQL lock/serialization failures) and never retried here: the sim server does not retry
a BUSY either, so it is what a user would have seen. (The data layer's own single retry after a
dropped connection happens inside the operation.) Their latency is not recorded.

The process CPU use over the measured window is recorded so a saturated client shows
(``client_bound``, :mod:`emrops.stats.saturation`). SQLite's engine runs inside the client
process by nature, so for SQLite that CPU includes the database's own work.
"""

from __future__ import annotations

import contextlib
import resource
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.engine import Engine

from emrops.bench.workloads import Client, Dataset
from emrops.errors import Interrupted
from emrops.stats.histogram import LatencyHistogram, merge_all
from emrops.stats.saturation import cpu_share, saturated, usable_cores

_BUSY_MARKERS = (
    "database is locked",
    "database is busy",
    "database table is locked",
    "could not serialize access",
    "deadlock detected",
    "could not obtain lock",
    "lock timeout",
)
MAX_ERROR_SAMPLES = 5


@dataclass
class OpStats:
    """One operation's counts and latencies (per client, then merged)."""

    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    errors: int = 0
    busy: int = 0

    @property
    def count(self) -> int:
        return self.histogram.count

    def merge(self, other: OpStats) -> OpStats:
        self.histogram.merge(other.histogram)
        self.errors += other.errors
        self.busy += other.busy
        return self


@dataclass
class CellRun:
    """One measured run (one engine, one client count, one repeat)."""

    clients: int
    duration_s: float
    ops: dict[str, OpStats]
    client_cpu_pct: float  # CPU-seconds of all client processes per wall second, x 100
    error_samples: list[str]
    processes: int = 1
    cpu_seconds: list[float] = field(default_factory=list)  # per client process
    cores: int = field(default_factory=usable_cores)
    # the measured window in wall-clock (Unix) seconds, so a sampler outside the clients (the
    # database server's CPU in benchmarks/harness.py) can cover exactly the same time
    window: tuple[float, float] = (0.0, 0.0)

    @property
    def cpu_share(self) -> float:
        """Client CPU-seconds / (wall x min(processes, cores))."""
        return cpu_share(self.client_cpu_pct / 100.0, 1.0, self.processes, self.cores)

    @property
    def client_bound(self) -> bool:
        """The clients used more than 80 % of their CPU: they, not the database, set the pace."""
        return saturated(self.cpu_share)

    @property
    def count(self) -> int:
        return sum(s.count for s in self.ops.values())

    @property
    def errors(self) -> int:
        return sum(s.errors for s in self.ops.values())

    @property
    def busy(self) -> int:
        return sum(s.busy for s in self.ops.values())

    @property
    def ops_per_s(self) -> float:
        return self.count / self.duration_s if self.duration_s > 0 else 0.0

    def all_ops(self) -> LatencyHistogram:
        return merge_all(s.histogram for s in self.ops.values())


def is_busy(exc: BaseException) -> bool:
    """True for lock contention: SQLite BUSY/LOCKED, PostgreSQL serialization/lock failures."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        if any(marker in text for marker in _BUSY_MARKERS):
            return True
        current = current.__cause__ or current.__context__
    return False


class StepSource(Protocol):
    """What a client must offer the runner: the timed operations of its next iteration."""

    def step(self) -> list[tuple[str, Callable[[], Any]]]: ...


class _Worker(threading.Thread):
    def __init__(
        self,
        client: StepSource,
        start_barrier: threading.Barrier,
        stop: threading.Event,
        times: dict[str, float],
    ) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.start_barrier = start_barrier
        self.stop = stop
        self.times = times
        self.ops: dict[str, OpStats] = {}
        self.error_samples: list[str] = []
        self.crash: BaseException | None = None

    def _stats(self, name: str) -> OpStats:
        # not setdefault(name, OpStats()): that would build a histogram (~0.2 ms) on every call
        stats = self.ops.get(name)
        if stats is None:
            stats = self.ops[name] = OpStats()
        return stats

    def run(self) -> None:
        try:
            # a client that holds a connection for the cell (workloads.Client) holds it in its
            # own thread: checked out at its first operation (in the warm-up), returned here
            hold = getattr(self.client, "connection", None)
            with hold() if hold is not None else contextlib.nullcontext():
                self._loop()
        except BaseException as exc:  # a bug in the harness: reported by the main thread
            self.crash = exc

    def _loop(self) -> None:
        self.start_barrier.wait()
        measure_from, end = self.times["measure_from"], self.times["end"]
        clock = time.perf_counter
        while not self.stop.is_set():
            for name, fn in self.client.step():
                began = clock()
                if began >= end:
                    return
                try:
                    fn()
                except Exception as exc:  # counted, not fatal: the run goes on
                    if began >= measure_from:
                        stats = self._stats(name)
                        stats.errors += 1
                        if is_busy(exc):
                            stats.busy += 1
                        if len(self.error_samples) < MAX_ERROR_SAMPLES:
                            self.error_samples.append(f"{name}: {exc}")
                    continue
                elapsed = clock() - began
                if began >= measure_from:
                    self._stats(name).histogram.record_seconds(elapsed)


def run_cell(
    engine: Engine,
    dataset: Dataset,
    workload: str,
    clients: int,
    *,
    warmup_s: float,
    duration_s: float,
    seed: int = 1,
    sleep: Callable[[float], None] = time.sleep,
    make_client: Callable[[int], StepSource] | None = None,
    client_ids: Sequence[int] | None = None,
    wait_start: Callable[[], None] | None = None,
) -> CellRun:
    """Run ``clients`` concurrent clients for ``warmup_s + duration_s``; return the measured part.

    ``make_client(seed)`` replaces the EMRsim workload (``benchmarks/harness.py`` runs pgbench's
    select-only query through the same runner). ``client_ids`` (default ``range(clients)``) are
    the clients' numbers in the whole cell, which seed their random generators, so a client
    does the same operations whichever process runs it. ``wait_start()`` is called once every
    client is ready, just before they start (a process waits there for the others). Raises
    Interrupted on Ctrl-C (after stopping the clients)."""
    if clients < 1:
        raise ValueError("clients must be at least 1")
    ids = list(client_ids) if client_ids is not None else list(range(clients))
    if len(ids) != clients:
        raise ValueError("client_ids must name every client")
    stop = threading.Event()
    times: dict[str, float] = {}
    barrier = threading.Barrier(clients + 1, action=lambda: _set_times(times, warmup_s, duration_s))
    factory = make_client or (lambda s: Client(engine, dataset, workload, s))
    workers = [_Worker(factory(seed * 100_003 + i), barrier, stop, times) for i in ids]
    for w in workers:
        w.start()
    try:
        if wait_start is not None:
            wait_start()
        barrier.wait()
        _sleep_until(times["measure_from"], sleep)
        cpu0, wall0, unix0 = _cpu_seconds(), time.perf_counter(), time.time()
        _sleep_until(times["end"], sleep)
        cpu1, wall1, unix1 = _cpu_seconds(), time.perf_counter(), time.time()
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        stop.set()
        for w in workers:
            w.join(timeout=30)
        raise Interrupted("interrupted: benchmark stopped, scratch databases removed") from None
    for w in workers:
        if w.crash is not None:
            raise w.crash
    ops: dict[str, OpStats] = {}
    samples: list[str] = []
    for w in workers:
        for name, stats in w.ops.items():
            if name in ops:
                ops[name].merge(stats)
            else:
                ops[name] = stats
        samples.extend(w.error_samples)
    cpu_pct = 100.0 * (cpu1 - cpu0) / (wall1 - wall0) if wall1 > wall0 else 0.0
    return CellRun(
        clients,
        duration_s,
        dict(sorted(ops.items())),
        cpu_pct,
        samples[:MAX_ERROR_SAMPLES],
        processes=1,
        cpu_seconds=[cpu1 - cpu0],
        window=(unix0, unix1),
    )


def _set_times(times: dict[str, float], warmup_s: float, duration_s: float) -> None:
    start = time.perf_counter()
    times["measure_from"] = start + warmup_s
    times["end"] = start + warmup_s + duration_s


def _sleep_until(deadline: float, sleep: Callable[[float], None]) -> None:
    while (left := deadline - time.perf_counter()) > 0:
        sleep(min(left, 0.25))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
