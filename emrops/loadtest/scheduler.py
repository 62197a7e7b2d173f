"""The load schedule of one generator process: open model (default) or closed model.

Open model: request ``i`` (over all processes) has the intended start ``t0 + i / rate``; this
process sends the indices ``k, k + P, k + 2P, ...``. Latency is measured from the *intended*
start, so a stalled server or a stalled generator shows up in the percentiles instead of being
hidden (no coordinated omission). A request sent more than ``late_after`` after its intended
start is counted as *late*; one that cannot be sent because ``max_inflight`` requests are
already waiting is *dropped* (never sent, counted, not timed), like k6's dropped iterations.

Closed model (``--closed N``): N virtual users, each sending its next request when the previous
one ended, as fast as the server allows; latency from the actual start (max-throughput runs).

Time is split into the warm-up (not recorded) and ``repeat`` consecutive windows of
``duration``; a request belongs to the window of its intended (open) or actual (closed) start.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from emrops.loadtest.scenarios import Scenario, StepFailed
from emrops.stats.histogram import LatencyHistogram

PROGRESS_EVERY = 0.5


@dataclass(frozen=True)
class Plan:
    """Everything a generator process needs (picklable: sent to spawned processes)."""

    scenario: str
    urls: tuple[str, ...]
    rate: float | None  # requests/s over all processes (open model)
    vus: int | None  # virtual users over all processes (closed model)
    duration: float
    warmup: float = 0.0
    repeat: int = 1
    processes: int = 1
    timeout: float = 10.0
    max_inflight: int = 1000  # over all processes
    late_after: float = 0.02
    sessions: int = 4  # per target and process
    token: str | None = None

    @property
    def model(self) -> str:
        return "closed" if self.vus else "open"

    @property
    def total_time(self) -> float:
        return self.warmup + self.duration * self.repeat


@dataclass
class WindowStats:
    """Counts and histograms of one measured window (one repeat) of one or more processes."""

    hist: LatencyHistogram = field(default_factory=LatencyHistogram)
    steps: dict[str, LatencyHistogram] = field(default_factory=dict)
    step_errors: Counter[str] = field(default_factory=Counter)
    scheduled: int = 0
    sent: int = 0
    ok: int = 0
    errors: int = 0
    late: int = 0
    dropped: int = 0
    error_kinds: Counter[str] = field(default_factory=Counter)
    url_requests: Counter[int] = field(default_factory=Counter)
    url_errors: Counter[int] = field(default_factory=Counter)

    def record(self, step: str, latency_s: float, url_index: int, error: str | None) -> None:
        self.hist.record_seconds(latency_s)
        hist = self.steps.get(step)
        if hist is None:  # not setdefault: a new histogram costs a millisecond
            hist = self.steps[step] = LatencyHistogram()
        hist.record_seconds(latency_s)
        self.url_requests[url_index] += 1
        if error is None:
            self.ok += 1
        else:
            self.errors += 1
            self.error_kinds[error] += 1
            self.step_errors[step] += 1
            self.url_errors[url_index] += 1

    def merge(self, other: WindowStats) -> WindowStats:
        self.hist.merge(other.hist)
        for step, hist in other.steps.items():
            if step not in self.steps:
                self.steps[step] = LatencyHistogram()
            self.steps[step].merge(hist)
        for name in ("scheduled", "sent", "ok", "errors", "late", "dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.step_errors.update(other.step_errors)
        self.error_kinds.update(other.error_kinds)
        self.url_requests.update(other.url_requests)
        self.url_errors.update(other.url_errors)
        return self

    def to_wire(self) -> dict[str, Any]:
        return {
            "hist": self.hist.encode(),
            "steps": {k: v.encode() for k, v in self.steps.items()},
            "step_errors": dict(self.step_errors),
            "counts": [self.scheduled, self.sent, self.ok, self.errors, self.late, self.dropped],
            "error_kinds": dict(self.error_kinds),
            "url_requests": {str(k): v for k, v in self.url_requests.items()},
            "url_errors": {str(k): v for k, v in self.url_errors.items()},
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WindowStats:
        out = cls(
            hist=LatencyHistogram.decode(data["hist"]),
            steps={k: LatencyHistogram.decode(v) for k, v in data["steps"].items()},
            step_errors=Counter(data["step_errors"]),
            error_kinds=Counter(data["error_kinds"]),
            url_requests=Counter({int(k): v for k, v in data["url_requests"].items()}),
            url_errors=Counter({int(k): v for k, v in data["url_errors"].items()}),
        )
        out.scheduled, out.sent, out.ok, out.errors, out.late, out.dropped = data["counts"]
        return out


class Recorder:
    """Collects one process's windows, live progress and schedule lag."""

    def __init__(self, plan: Plan, start: float) -> None:
        self.plan = plan
        self.start = start
        self.windows = [WindowStats() for _ in range(plan.repeat)]
        self.lag = LatencyHistogram()
        # latencies (µs) since the last progress report: a plain list, because decoding an
        # encoded histogram costs tens of milliseconds, too much for a live progress line
        self.live: list[int] = []
        self.totals = Counter[str]()

    def window(self, t: float) -> WindowStats | None:
        """The window of time ``t`` (monotonic), None during the warm-up or after the end."""
        offset = t - self.start - self.plan.warmup
        if offset < 0:
            return None
        index = int(offset // self.plan.duration)
        return self.windows[index] if index < len(self.windows) else None


async def _one(scenario: Scenario, rec: Recorder, i: int, began: float, timeout: float) -> None:
    """Send request ``i`` and record its latency measured from ``began``."""
    win = rec.window(began)
    error: str | None = None
    step = scenario.step_for(i)
    try:
        async with asyncio.timeout(timeout):  # no extra task per request, unlike wait_for
            step = await scenario.iterate(i)
    except StepFailed as exc:
        error = exc.kind
    except TimeoutError:
        error = "timeout"
    latency = max(0.0, time.monotonic() - began)
    rec.live.append(int(latency * 1_000_000))
    rec.totals["errors" if error else "ok"] += 1
    if win is not None:
        win.record(step, latency, i % len(rec.plan.urls), error)


async def open_loop(scenario: Scenario, rec: Recorder, index: int) -> None:
    """Send this process's share of the schedule at the intended times."""
    plan = rec.plan
    assert plan.rate
    total = int(plan.rate * plan.total_time + 1e-9)
    limit = max(1, plan.max_inflight // plan.processes)
    inflight: set[asyncio.Task[None]] = set()
    i = index
    while i < total:
        intended = rec.start + i / plan.rate
        now = time.monotonic()
        if intended > now:
            await asyncio.sleep(intended - now)
            now = time.monotonic()
        win = rec.window(intended)
        rec.totals["scheduled"] += 1
        if win is not None:
            win.scheduled += 1
        if len(inflight) >= limit:
            rec.totals["dropped"] += 1
            if win is not None:
                win.dropped += 1
            i += plan.processes
            continue
        lag = max(0.0, now - intended)  # the loop may wake a hair early
        rec.totals["sent"] += 1
        if win is not None:
            win.sent += 1
            rec.lag.record_seconds(lag)
            if lag > plan.late_after:
                win.late += 1
        task = asyncio.create_task(_one(scenario, rec, i, intended, plan.timeout))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
        i += plan.processes
    if inflight:
        await asyncio.wait(inflight, timeout=plan.timeout + 2)


async def closed_loop(scenario: Scenario, rec: Recorder, index: int) -> None:
    """This process's virtual users, each sending back to back until the end."""
    plan = rec.plan
    assert plan.vus
    end = rec.start + plan.total_time
    vus = plan.vus
    mine = [u for u in range(vus) if u % plan.processes == index]

    async def user(u: int) -> None:
        n = 0
        while True:
            began = time.monotonic()
            if began >= end:
                return
            i = u + n * vus
            win = rec.window(began)
            rec.totals["scheduled"] += 1
            rec.totals["sent"] += 1
            if win is not None:
                win.scheduled += 1
                win.sent += 1
            await _one(scenario, rec, i, began, plan.timeout)
            n += 1

    await asyncio.gather(*(user(u) for u in mine))


@dataclass
class WorkerResult:
    """What one generator process measured."""

    worker: int
    windows: list[WindowStats]
    lag: LatencyHistogram
    cpu: float  # CPU time / wall time while measuring (1.0 = one core busy)

    def to_wire(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "windows": [w.to_wire() for w in self.windows],
            "lag": self.lag.encode(),
            "cpu": self.cpu,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> WorkerResult:
        return cls(
            int(data["worker"]),
            [WindowStats.from_wire(w) for w in data["windows"]],
            LatencyHistogram.decode(data["lag"]),
            float(data["cpu"]),
        )


async def run_worker(
    plan: Plan,
    index: int,
    wait_start: Callable[[], Awaitable[float]],
    emit: Callable[[dict[str, Any]], None],
) -> WorkerResult:
    """Set up, wait for the common start (an epoch time), run the schedule, and return the
    windows plus the process's CPU use and schedule lag."""
    per_process_conns = max(10, plan.max_inflight // plan.processes)
    scenario = Scenario(
        plan.scenario,
        list(plan.urls),
        token=plan.token,
        sessions=plan.sessions,
        timeout=plan.timeout,
        max_connections=per_process_conns,
    )
    try:
        await scenario.setup()
        start_epoch = await wait_start()
        start = time.monotonic() + (start_epoch - time.time())
        rec = Recorder(plan, start)
        cpu: dict[str, float] = {}

        async def measure() -> None:
            await asyncio.sleep(max(0.0, start + plan.warmup - time.monotonic()))
            cpu["cpu0"], cpu["wall0"] = time.process_time(), time.monotonic()

        async def report() -> None:
            while True:
                await asyncio.sleep(PROGRESS_EVERY)
                live, rec.live = rec.live, []
                emit({"worker": index, "totals": dict(rec.totals), "live": live})

        await asyncio.sleep(max(0.0, start - time.monotonic()))
        measurer = asyncio.create_task(measure())
        reporter = asyncio.create_task(report())
        try:
            if plan.model == "open":
                await open_loop(scenario, rec, index)
            else:
                await closed_loop(scenario, rec, index)
        finally:
            cpu_used = time.process_time() - cpu.get("cpu0", time.process_time())
            wall = time.monotonic() - cpu.get("wall0", time.monotonic())
            for task in (measurer, reporter):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        emit({"worker": index, "totals": dict(rec.totals), "live": rec.live})
        return WorkerResult(index, rec.windows, rec.lag, cpu_used / wall if wall > 0 else 0.0)
    finally:
        await scenario.close()
