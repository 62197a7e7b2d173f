"""A cell's clients spread over client processes, so the harness scales with cores.

``processes`` spawned processes (no fork: each starts a clean interpreter), each with its own
engine, pool and client threads, its own HdrHistograms and its own CPU clock. Client ``i`` of
the cell runs in process ``i % processes``, with the same seed it would have in one process.
Every process opens its connections, reports ``ready`` and waits; when all are ready the parent
lets them start together; each sends back its encoded histograms (merged here through
:mod:`emrops.stats.histogram`, never averaged), counts and CPU-seconds.

With one process (or one client) the clients run in this process, as threads.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from typing import Any

from emrops.bench.runner import MAX_ERROR_SAMPLES, CellRun, OpStats, run_cell
from emrops.bench.scratch import open_engine
from emrops.bench.workloads import Dataset
from emrops.children import supervise
from emrops.db.engine import DbUrl, parse_db_url
from emrops.errors import EmropsError, Interrupted
from emrops.stats.histogram import LatencyHistogram
from emrops.stats.saturation import usable_cores

READY_TIMEOUT_S = 60.0


class ClientProcessError(EmropsError):
    """A client process could not start or failed."""


@dataclass(frozen=True)
class ProcessPlan:
    """What one client process runs (picklable: it crosses the spawn)."""

    url: str
    sqlite_synchronous: str | None
    dataset: Dataset
    workload: str
    client_ids: tuple[int, ...]
    warmup_s: float
    duration_s: float
    seed: int


def split_clients(clients: int, processes: int) -> list[tuple[int, ...]]:
    """Client numbers per process (round robin); processes without a client are left out."""
    used = max(1, min(processes, clients))
    return [tuple(range(k, clients, used)) for k in range(used)]


def _child(plan: ProcessPlan, index: int, out: Any, go: Any) -> None:
    """Entry point of a spawned client process."""
    try:
        engine = open_engine(parse_db_url(plan.url), len(plan.client_ids), plan.sqlite_synchronous)
    except BaseException as exc:
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
        return

    def wait_start() -> None:
        out.put(("ready", index, None))
        if not go.wait(READY_TIMEOUT_S):
            raise ClientProcessError("client processes were not started in time")

    try:
        run = run_cell(
            engine,
            plan.dataset,
            plan.workload,
            len(plan.client_ids),
            warmup_s=plan.warmup_s,
            duration_s=plan.duration_s,
            seed=plan.seed,
            client_ids=plan.client_ids,
            wait_start=wait_start,
        )
        payload = {
            "ops": {
                name: {"histogram": s.histogram.encode(), "errors": s.errors, "busy": s.busy}
                for name, s in run.ops.items()
            },
            "cpu_seconds": run.cpu_seconds[0],
            "cpu_pct": run.client_cpu_pct,
            "window": run.window,
            "error_samples": run.error_samples,
        }
        out.put(("result", index, payload))
    except BaseException as exc:  # reported to the parent, which fails the cell
        out.put(("error", index, f"{type(exc).__name__}: {exc}"))
    finally:
        engine.dispose()


def run_cell_processes(
    url: DbUrl,
    dataset: Dataset,
    workload: str,
    clients: int,
    processes: int,
    *,
    warmup_s: float,
    duration_s: float,
    seed: int = 1,
    sqlite_synchronous: str | None = None,
) -> CellRun:
    """Run one cell with its clients spread over ``processes`` processes; merge the results.

    Raises ClientProcessError when a process fails or does not finish in time, Interrupted on
    Ctrl-C (the processes are stopped)."""
    groups = split_clients(clients, processes)
    if len(groups) == 1:
        engine = open_engine(url, clients, sqlite_synchronous)
        try:
            return run_cell(
                engine, dataset, workload, clients, warmup_s=warmup_s, duration_s=duration_s,
                seed=seed,
            )  # fmt: skip
        finally:
            engine.dispose()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    go = ctx.Event()
    plans = [
        ProcessPlan(
            str(url), sqlite_synchronous, dataset, workload, ids, warmup_s, duration_s, seed
        )
        for ids in groups
    ]
    procs = [
        ctx.Process(target=_child, args=(plan, k, out, go), daemon=True)
        for k, plan in enumerate(plans)
    ]
    results: dict[int, dict[str, Any]] = {}
    ready = 0

    def on_message(kind: str, index: int, payload: Any) -> bool:
        nonlocal ready
        if kind == "ready":
            ready += 1
            if ready == len(procs):
                go.set()
            return False
        if kind == "result":
            results[index] = payload
            return True
        raise ClientProcessError(f"client process {index} failed: {payload}")

    try:
        supervise(
            procs,
            out,
            deadline=time.monotonic() + READY_TIMEOUT_S + warmup_s + duration_s + 60,
            on_message=on_message,
            failure=ClientProcessError,
            child="client process",
        )
    except KeyboardInterrupt:
        raise Interrupted("interrupted: benchmark stopped, scratch databases removed") from None
    return merge_results([results[k] for k in sorted(results)], clients, duration_s)


def merge_results(payloads: list[dict[str, Any]], clients: int, duration_s: float) -> CellRun:
    """One CellRun from the processes' payloads: histograms merged, counts and CPU summed."""
    ops: dict[str, OpStats] = {}
    samples: list[str] = []
    for payload in payloads:
        for name, op in payload["ops"].items():
            stats = OpStats(LatencyHistogram.decode(op["histogram"]), op["errors"], op["busy"])
            if name in ops:
                ops[name].merge(stats)
            else:
                ops[name] = stats
        samples.extend(payload["error_samples"])
    return CellRun(
        clients,
        duration_s,
        dict(sorted(ops.items())),
        sum(p["cpu_pct"] for p in payloads),
        samples[:MAX_ERROR_SAMPLES],
        processes=len(payloads),
        cpu_seconds=[p["cpu_seconds"] for p in payloads],
        cores=usable_cores(),
        window=(
            min(p["window"][0] for p in payloads),
            max(p["window"][1] for p in payloads),
        ),
    )
