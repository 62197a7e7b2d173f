"""Generator processes: one per core with ``--processes auto``, each with its own histograms.

With one process the schedule runs in this process. With more, each is a spawned process
(no fork of a running event loop) that sets up its sessions, reports ``ready`` and waits for
the common start time; the parent merges their histograms (never averaging percentiles).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emrops.children import supervise
from emrops.errors import EmropsError
from emrops.loadtest.scenarios import SetupFailed
from emrops.loadtest.scheduler import Plan, WindowStats, WorkerResult, run_worker
from emrops.machine import usable_cores
from emrops.stats.histogram import LatencyHistogram

START_DELAY = 0.2  # seconds between "all ready" and the common start
READY_TIMEOUT = 60.0


class GeneratorError(EmropsError):
    """The load generator could not start or a generator process failed."""


@dataclass
class Progress:
    """Live totals over all processes, for the progress line."""

    elapsed: float = 0.0
    totals: dict[str, int] = field(default_factory=dict)
    live: list[int] = field(default_factory=list)  # latencies (µs) since the last call

    def live_percentile_ms(self, pct: float) -> float:
        """Exact percentile of the latencies since the last progress report."""
        if not self.live:
            return 0.0
        ordered = sorted(self.live)
        return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100.0))] / 1000.0


@dataclass
class RunData:
    """Merged windows of all processes plus per-process CPU and merged schedule lag."""

    windows: list[WindowStats]
    lag: LatencyHistogram
    cpu: list[float]


def run_async(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is installed (it comes with uvicorn[standard]): about
    twice the requests per core of the default loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(coro)
    return uvloop.run(coro)


def resolve_processes(text: str) -> int:
    if text == "auto":
        return usable_cores()
    return int(text)


def _setup_error(exc: BaseException) -> GeneratorError:
    return GeneratorError(
        f"load test not started: {exc}",
        hint="check that the sim server runs at --url (emrops sim serve) and answers /health",
    )


class _Aggregator:
    def __init__(self, plan: Plan, on_progress: Callable[[Progress], None] | None) -> None:
        self.plan = plan
        self.on_progress = on_progress
        self.totals: dict[int, dict[str, int]] = {}
        self.live: list[int] = []
        self.t0 = time.monotonic()
        self.last = 0.0

    def add(self, message: dict[str, Any]) -> None:
        self.totals[message["worker"]] = message["totals"]
        self.live.extend(message["live"])
        now = time.monotonic()
        if self.on_progress is not None and now - self.last >= 0.5:
            summed: dict[str, int] = {}
            for totals in self.totals.values():
                for key, value in totals.items():
                    summed[key] = summed.get(key, 0) + value
            self.on_progress(Progress(now - self.t0, summed, self.live))
            self.live = []
            self.last = now


def _merge(results: list[WorkerResult], plan: Plan) -> RunData:
    windows = [WindowStats() for _ in range(plan.repeat)]
    lag = LatencyHistogram()
    cpu = []
    for result in sorted(results, key=lambda r: r.worker):
        for total, window in zip(windows, result.windows, strict=True):
            total.merge(window)
        lag.merge(result.lag)
        cpu.append(result.cpu)
    return RunData(windows, lag, cpu)


def run(plan: Plan, on_progress: Callable[[Progress], None] | None = None) -> RunData:
    """Run the plan in ``plan.processes`` processes and merge what they measured."""
    agg = _Aggregator(plan, on_progress)
    if plan.processes == 1:

        async def start_now() -> float:
            agg.t0 = time.monotonic()
            return time.time() + 0.01

        try:
            result = run_async(run_worker(plan, 0, start_now, agg.add))
        except SetupFailed as exc:
            raise _setup_error(exc) from None
        return _merge([result], plan)
    return _run_processes(plan, agg)


def _child(plan: Plan, index: int, out: Any, go: Any, start_at: Any) -> None:
    """Entry point of a spawned generator process."""

    async def wait_start() -> float:
        out.put(("ready", index, None))
        await asyncio.to_thread(go.wait, READY_TIMEOUT)
        return float(start_at.value)

    def emit(message: dict[str, Any]) -> None:
        out.put(("progress", index, message))

    try:
        result = run_async(run_worker(plan, index, wait_start, emit))
    except SetupFailed as exc:
        out.put(("setup_failed", index, str(exc)))
    except BaseException as exc:  # reported to the parent, which fails the run
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
    else:
        out.put(("result", index, result.to_wire()))


def _run_processes(plan: Plan, agg: _Aggregator) -> RunData:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    procs = [
        ctx.Process(target=_child, args=(plan, k, out, go, start_at), daemon=True)
        for k in range(plan.processes)
    ]
    results: list[WorkerResult] = []
    ready = 0

    def on_message(kind: str, index: int, payload: Any) -> bool:
        nonlocal ready
        if kind == "ready":
            ready += 1
            if ready == len(procs):
                start_at.value = time.time() + START_DELAY
                agg.t0 = time.monotonic() + START_DELAY
                go.set()
            return False
        if kind == "progress":
            agg.add(payload)
            return False
        if kind == "result":
            results.append(WorkerResult.from_wire(payload))
            return True
        if kind == "setup_failed":
            raise _setup_error(payload)
        raise GeneratorError(f"generator process {index} failed: {payload}")

    supervise(
        procs,
        out,
        deadline=time.monotonic() + READY_TIMEOUT + plan.total_time + plan.timeout + 30,
        on_message=on_message,
        failure=GeneratorError,
        child="generator process",
    )
    return _merge(results, agg.plan)
