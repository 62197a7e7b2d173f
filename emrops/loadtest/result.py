"""The load-test result document (schema ``emrops.loadtest.result/1``), budgets and compare.

The document is described field by field in docs/loadtest.md. It carries the merged HdrHistogram
of the run and of every repeat (base64 "histoblob" text), so ``compare`` and other tools can
recompute any percentile and merge runs without averaging percentiles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emrops import __version__
from emrops.errors import UsageError
from emrops.loadtest.budgets import LATENCY_METRICS, Budget, BudgetResult
from emrops.loadtest.scheduler import Plan, WindowStats
from emrops.loadtest.workers import RunData
from emrops.stats.compare import Better, Comparison, Series, compare, latency_series
from emrops.stats.histogram import LatencyHistogram, merge_all
from emrops.stats.saturation import CPU_LIMIT, cpu_share, saturated

SCHEMA = "emrops.loadtest.result/1"
LATE_LIMIT = 0.01  # more than 1 % of requests sent late: the generator fell behind
COMPARED = ("p50", "p95", "p99")


def latency_block(hist: LatencyHistogram) -> dict[str, Any]:
    """Count and percentiles in ms, plus the encoded histogram (µs)."""
    out: dict[str, Any] = {"count": hist.count}
    for name, pct in LATENCY_METRICS.items():
        if name == "mean":
            value = hist.summary().mean_us
        else:
            value = hist.percentile_us(pct) if pct > 0 else hist.min_us
        out[f"{name}_ms"] = round(float(value) / 1000.0, 3)
    out["histogram"] = hist.encode()
    return out


def _rates(w: WindowStats, seconds: float) -> dict[str, Any]:
    completed = w.ok + w.errors
    return {
        "scheduled": w.scheduled,
        "sent": w.sent,
        "completed": completed,
        "ok": w.ok,
        "errors": w.errors,
        "late": w.late,
        "dropped": w.dropped,
        "error_rate": w.errors / completed if completed else 0.0,
        "late_rate": w.late / w.scheduled if w.scheduled else 0.0,
        "drop_rate": w.dropped / w.scheduled if w.scheduled else 0.0,
        "rps": w.ok / seconds if seconds > 0 else 0.0,
        "throughput": completed / seconds if seconds > 0 else 0.0,
    }


def _block(w: WindowStats, seconds: float, urls: tuple[str, ...]) -> dict[str, Any]:
    out = _rates(w, seconds)
    out["latency"] = latency_block(w.hist)
    out["error_kinds"] = dict(sorted(w.error_kinds.items()))
    out["steps"] = {
        step: {
            "count": hist.count,
            "errors": w.step_errors.get(step, 0),
            "error_rate": w.step_errors.get(step, 0) / hist.count if hist.count else 0.0,
            "rps": (hist.count - w.step_errors.get(step, 0)) / seconds if seconds else 0.0,
            "latency": latency_block(hist),
        }
        for step, hist in sorted(w.steps.items())
    }
    out["targets"] = [
        {"url": url, "requests": w.url_requests.get(k, 0), "errors": w.url_errors.get(k, 0)}
        for k, url in enumerate(urls)
    ]
    return out


def metric_value(block: dict[str, Any], budget: Budget) -> float | None:
    """The value a budget is checked against, from a summary block (seconds for latency)."""
    scope = block if budget.step is None else block["steps"].get(budget.step)
    if scope is None:
        return None
    if budget.metric in LATENCY_METRICS:
        if scope["latency"]["count"] == 0:
            return None
        return float(scope["latency"][f"{budget.metric}_ms"]) / 1000.0
    if budget.metric not in scope:  # late_rate / drop_rate are not kept per step
        scope = block
    return float(scope[budget.metric])


def check_budgets(summary: dict[str, Any], budgets: list[Budget]) -> list[BudgetResult]:
    out = []
    for budget in budgets:
        actual = metric_value(summary, budget)
        out.append(BudgetResult(budget, actual, actual is not None and budget.holds(actual)))
    return out


def reliability(data: RunData, summary: dict[str, Any], plan: Plan) -> list[str]:
    """Reasons the generator itself may have been the bottleneck (empty: reliable)."""
    reasons = []
    for k, cpu in enumerate(data.cpu):
        # data.cpu is CPU-seconds per wall second of one process: its share of one core
        if saturated(cpu_share(cpu, 1.0, 1, cores=1)):
            reasons.append(
                f"generator process {k} used {cpu:.0%} CPU (limit {CPU_LIMIT:.0%}); "
                "use more --processes or a lower --rate"
            )
    if plan.model == "open" and summary["late_rate"] > LATE_LIMIT:
        reasons.append(
            f"{summary['late_rate']:.1%} of requests were sent more than "
            f"{plan.late_after * 1000:.0f}ms after their intended start (schedule lag p99 "
            f"{data.lag.percentile_us(99) / 1000:.1f}ms): the generator fell behind"
        )
    return reasons


def build(
    plan: Plan,
    data: RunData,
    budgets: list[Budget],
    started_at: datetime,
    finished_at: datetime,
) -> dict[str, Any]:
    """The result document for one run (all repeats)."""
    total = WindowStats()
    for w in data.windows:
        total.merge(w)
    summary = _block(total, plan.duration * plan.repeat, plan.urls)
    repeats = [_block(w, plan.duration, plan.urls) for w in data.windows]
    results = check_budgets(summary, budgets)
    reasons = reliability(data, summary, plan)
    return {
        "schema": SCHEMA,
        "tool": {"name": "emrops", "version": __version__},
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "config": {
            "urls": list(plan.urls),
            "scenario": plan.scenario,
            "model": plan.model,
            "rate": plan.rate,
            "vus": plan.vus,
            "duration_s": plan.duration,
            "warmup_s": plan.warmup,
            "repeat": plan.repeat,
            "processes": plan.processes,
            "timeout_s": plan.timeout,
            "max_inflight": plan.max_inflight,
            "late_after_s": plan.late_after,
        },
        "summary": summary,
        "repeats": repeats,
        "generator": {
            "cpu": [round(c, 4) for c in data.cpu],
            "schedule_lag": latency_block(data.lag),
            "reliable": not reasons,
            "unreliable_reasons": reasons,
        },
        "budgets": [r.as_dict() for r in results],
        "passed": all(r.passed for r in results),
    }


def now() -> datetime:
    return datetime.now(UTC)


# compare --------------------------------------------------------------------------------------
def load(path: Path) -> dict[str, Any]:
    """Read a result file; UsageError unless it is a result of a schema version we read."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"result file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read result file {path}: {exc}") from None
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"result file {path} is nested too deeply to read") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else None
        raise UsageError(
            f"{path} is not a loadtest result (schema {found!r}, expected {SCHEMA!r})",
            hint="pass files written by `emrops loadtest run --out FILE`",
        )
    return data


def _series(doc: dict[str, Any]) -> dict[str, Series]:
    repeats = doc["repeats"]
    out: dict[str, Series] = {}
    hists = [LatencyHistogram.decode(r["latency"]["histogram"]) for r in repeats]
    for name in COMPARED:
        out[name] = latency_series(hists, LATENCY_METRICS[name])
    out["rps"] = Series.of([r["rps"] for r in repeats], Better.HIGHER)
    out["error_rate"] = Series.of([r["error_rate"] for r in repeats], Better.LOWER)
    steps = sorted({s for r in repeats for s in r["steps"]})
    if len(steps) > 1:
        for step in steps:
            step_hists = [
                LatencyHistogram.decode(r["steps"][step]["latency"]["histogram"])
                for r in repeats
                if step in r["steps"]
            ]
            if merge_all(step_hists).count:
                out[f"{step}.p95"] = latency_series(step_hists, 95.0)
    return out


@dataclass
class CompareReport:
    comparison: Comparison
    config_differences: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "emrops.loadtest.compare/1",
            **self.comparison.as_dict(),
            "config_differences": self.config_differences,
        }


def compare_results(
    baseline: dict[str, Any],
    result: dict[str, Any],
    max_regression: float,
    names: tuple[str, str] = ("the baseline", "the result"),
) -> CompareReport:
    """Compare two result documents metric by metric (see emrops.stats.compare). UsageError
    naming the file (``names``) whose content is not what a result holds (a file passes
    :func:`load` by its schema name alone, so a damaged or hand-edited one arrives here)."""
    configs = []
    series = []
    for doc, name in ((baseline, names[0]), (result, names[1])):
        try:
            config = doc["config"]
            if not isinstance(config, dict):
                raise TypeError(f"config is {type(config).__name__}, not an object")
            configs.append(config)
            series.append(_series(doc))
        except (KeyError, TypeError, ValueError, AttributeError, UsageError) as exc:
            what = exc.message if isinstance(exc, UsageError) else f"{type(exc).__name__}: {exc}"
            raise UsageError(
                f"{name} is not a complete loadtest result: {what}",
                hint="pass files written by `emrops loadtest run --out FILE`",
            ) from None
    diffs = []
    for key in ("scenario", "model", "rate", "vus", "duration_s", "urls"):
        a, b = configs[0].get(key), configs[1].get(key)
        if a != b:
            diffs.append(f"{key}: {a!r} -> {b!r}")
    try:
        comparison = compare(series[0], series[1], max_regression)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"result files are incomplete: {type(exc).__name__}: {exc}") from None
    return CompareReport(comparison, diffs)
