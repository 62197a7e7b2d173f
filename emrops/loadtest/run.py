"""``loadtest run`` as a library call: validate options, run the generators, build the result."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops.errors import UsageError
from emrops.httpurl import check_url
from emrops.loadtest import budgets as budget_mod
from emrops.loadtest import result as result_mod
from emrops.loadtest import workers
from emrops.loadtest.budgets import Budget
from emrops.loadtest.scenarios import SCENARIOS, STEPS_OF
from emrops.loadtest.scheduler import Plan


@dataclass
class LoadtestOptions:
    urls: list[str]
    scenario: str = "chat"
    rate: float | None = None
    closed: int | None = None
    duration: float = 30.0
    warmup: float = 0.0
    repeat: int = 1
    processes: int = 1
    timeout: float = 10.0
    max_inflight: int = 1000
    late_after: float = 0.02
    sessions: int = 4
    budget_exprs: list[str] = field(default_factory=list)
    budgets_file: Path | None = None
    token: str | None = None


def make_plan(opts: LoadtestOptions) -> tuple[Plan, list[Budget]]:
    """Validate everything before any request is sent (bad input: UsageError, exit 2)."""
    if not opts.urls:
        raise UsageError("no --url given", hint="e.g. --url http://127.0.0.1:8000")
    urls = tuple(check_url(u) for u in opts.urls)
    if opts.scenario not in SCENARIOS:
        raise UsageError(
            f"unknown scenario {opts.scenario!r}", hint=f"use one of {', '.join(SCENARIOS)}"
        )
    if opts.closed is not None and opts.rate is not None:
        raise UsageError(
            "--rate and --closed exclude each other",
            hint="open model: --rate 200/s; closed model: --closed 64 (virtual users)",
        )
    if opts.closed is None and opts.rate is None:
        raise UsageError(
            "give --rate (open model) or --closed N (closed model)", hint="e.g. --rate 50/s"
        )
    if opts.closed is not None and opts.closed < 1:
        raise UsageError(f"--closed {opts.closed}: need at least one virtual user")
    if opts.rate is not None and not (math.isfinite(opts.rate) and opts.rate > 0):
        raise UsageError(f"invalid rate {opts.rate}: must be above zero", hint="e.g. 200/s")
    if opts.duration <= 0:
        raise UsageError("--duration must be above zero", hint="e.g. --duration 60s")
    if opts.repeat < 1 or opts.processes < 1 or opts.sessions < 1 or opts.max_inflight < 1:
        raise UsageError("--repeat, --processes, --sessions and --max-inflight must be >= 1")
    if opts.timeout <= 0:
        raise UsageError("--timeout must be above zero")
    found: list[Budget] = []
    if opts.budgets_file is not None:
        found += budget_mod.load_file(opts.budgets_file)
    found += [budget_mod.parse_budget(expr) for expr in opts.budget_exprs]
    steps = STEPS_OF[opts.scenario]
    for budget in found:
        if budget.step is not None and budget.step not in steps:
            raise UsageError(
                f"budget {budget.expr!r}: the {opts.scenario} scenario has no {budget.step} step",
                hint=f"its steps: {', '.join(steps)}",
            )
    processes = opts.processes
    if opts.closed is not None:
        processes = min(processes, opts.closed)
    elif opts.rate is not None:
        # at least one request per second per process: `--processes auto` on a 64-core
        # machine at 5/s would otherwise start 64 generators (and their sessions) for nothing
        processes = min(processes, max(1, int(opts.rate)))
    plan = Plan(
        scenario=opts.scenario,
        urls=urls,
        rate=opts.rate,
        vus=opts.closed,
        duration=opts.duration,
        warmup=opts.warmup,
        repeat=opts.repeat,
        processes=processes,
        timeout=opts.timeout,
        max_inflight=max(opts.max_inflight, processes),
        late_after=opts.late_after,
        sessions=opts.sessions,
        token=opts.token,
    )
    return plan, found


def run_loadtest(
    opts: LoadtestOptions, on_progress: Callable[[workers.Progress], None] | None = None
) -> dict[str, Any]:
    """Run the load test and return the result document (budgets evaluated, not enforced)."""
    plan, found = make_plan(opts)
    started = result_mod.now()
    data = workers.run(plan, on_progress)
    return result_mod.build(plan, data, found, started, result_mod.now())
