"""``loadtest cloud``: run the exported locustfile on Azure Load Testing (many engines).

Through ``azure-developer-loadtesting`` with a pinned data-plane api-version: create or
update the test (Locust kind, engines, users, budgets as pass/fail criteria), upload the
locustfile and wait for its validation, start a run, poll it with progress, then read its
statistics into the same result shape ``loadtest run`` prints (table, budgets, JUnit).

Budgets map to criteria one to one (:func:`criteria_for`) and back (:func:`budget_results`);
a budget with no criterion (late/drop rates, min latency) is refused before anything is
sent (exit 2, naming it). Azure's criteria fail a run when ``actual CONDITION value``
holds; a budget ``p95<2s`` becomes ``response_time_ms p95 > 2000``, so a value exactly on
the threshold passes in Azure where ``loadtest run`` would fail it.
"""

from __future__ import annotations

import io
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emrops.errors import EmropsError, UsageError
from emrops.loadtest.budgets import Budget

API_VERSION = "2024-12-01-preview"  # the data-plane version whose tests have kind "Locust"
TERMINAL = ("DONE", "FAILED", "CANCELLED")
_PERCENTILE_AGGREGATES = {"p50": "p50", "p90": "p90", "p95": "p95", "p99": "p99", "p999": "p99.9"}
_STAT_FIELDS = {  # testRunStatistics fields, milliseconds
    "p50_ms": "medianResTime",
    "p90_ms": "pct1ResTime",
    "p95_ms": "pct2ResTime",
    "p99_ms": "pct3ResTime",
    "max_ms": "maxResTime",
    "mean_ms": "meanResTime",
}


def criterion_for(budget: Budget) -> dict[str, Any]:
    """The Azure pass/fail criterion that fails exactly when ``budget`` is broken."""
    condition = ">" if budget.op in ("<", "<=") else "<"
    metric = budget.metric
    if metric in _PERCENTILE_AGGREGATES or metric in ("mean", "max"):
        aggregate = _PERCENTILE_AGGREGATES.get(metric) or {"mean": "avg", "max": "max"}[metric]
        out = {
            "clientMetric": "response_time_ms",
            "aggregate": aggregate,
            "value": round(budget.threshold * 1000, 3),
        }
    elif metric == "error_rate":
        out = {"clientMetric": "error", "aggregate": "percentage", "value": budget.threshold * 100}
    elif metric == "rps":
        out = {"clientMetric": "requests_per_sec", "aggregate": "avg", "value": budget.threshold}
    else:
        raise UsageError(
            f"budget {budget.expr!r} has no Azure Load Testing criterion",
            hint="criteria exist for p50/p90/p95/p99/p999, mean, max, error_rate and rps",
        )
    out.update(condition=condition, action="continue")
    if budget.step:
        out["requestName"] = budget.step
    return out


def criteria_for(budgets: list[Budget]) -> dict[str, dict[str, Any]]:
    """Pass/fail metrics keyed by a stable id per budget (refuses unmappable budgets)."""
    return {_criterion_id(b): criterion_for(b) for b in budgets}


def _criterion_id(budget: Budget) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "emrops-budget:" + budget.expr))


def budget_results(budgets: list[Budget], run: dict[str, Any]) -> list[dict[str, Any]]:
    """Each budget with the actual value and verdict Azure reported for its criterion."""
    metrics = ((run.get("passFailCriteria") or {}).get("passFailMetrics")) or {}
    out = []
    for budget in budgets:
        found = metrics.get(_criterion_id(budget)) or {}
        actual = found.get("actualValue")
        if actual is not None:
            actual = float(actual)
            if found.get("clientMetric") == "response_time_ms":
                actual /= 1000.0
            elif found.get("clientMetric") == "error":
                actual /= 100.0
        result = str(found.get("result") or "").lower()
        out.append(
            {
                "expr": budget.expr,
                "metric": budget.metric,
                "step": budget.step,
                "op": budget.op,
                "threshold": budget.threshold,
                "actual": actual,
                "passed": result == "passed",
                "azure_result": result or None,
            }
        )
    return out


@dataclass
class CloudOptions:
    endpoint: str
    target_url: str
    scenario: str
    locustfile: str
    budgets: list[Budget]
    engines: int = 1
    users: int = 10
    spawn_rate: int = 10
    duration_s: float = 60.0
    test_id: str = ""
    token_secret_uri: str | None = None
    poll_interval: float = 5.0
    timeout_s: float = 3600.0
    extra: dict[str, Any] = field(default_factory=dict)


def _test_id(opts: CloudOptions) -> str:
    if opts.test_id:
        if not re.fullmatch(r"[a-z0-9_-]{2,50}", opts.test_id):
            raise UsageError(
                f"invalid --test-id {opts.test_id!r}", hint="2-50 of a-z, 0-9, _ and -"
            )
        return opts.test_id
    return f"emrops-{opts.scenario}"


def test_body(opts: CloudOptions) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": f"emrops {opts.scenario}",
        "description": "written by emrops loadtest cloud",
        "kind": "Locust",
        "loadTestConfiguration": {"engineInstances": opts.engines},
        "passFailCriteria": {"passFailMetrics": criteria_for(opts.budgets)},
        "environmentVariables": {
            "LOCUST_HOST": opts.target_url,
            "LOCUST_USERS": str(opts.users),
            "LOCUST_SPAWN_RATE": str(opts.spawn_rate),
            "LOCUST_RUN_TIME": f"{int(opts.duration_s)}s",
        },
    }
    if opts.token_secret_uri:
        body["secrets"] = {
            "EMROPS_SIM_TOKEN": {"value": opts.token_secret_uri, "type": "AKV_SECRET_URI"}
        }
    return body


def run_cloud(
    opts: CloudOptions,
    credential: Any,
    progress: Callable[[dict[str, Any]], None] | None = None,
    **client_kwargs: Any,
) -> dict[str, Any]:
    """Create/update the test, upload the file, run, wait; the result as ``loadtest run``."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    from azure.developer.loadtesting import LoadTestAdministrationClient, LoadTestRunClient

    if opts.engines < 1:
        raise UsageError(f"--engines must be at least 1, not {opts.engines}")
    if "://" in opts.endpoint and not opts.endpoint.startswith("https://"):
        raise UsageError(
            f"the Load Testing endpoint must be https, not {opts.endpoint!r}",
            hint="pass the resource's data-plane URI (output loadTestingDataPlaneUri)",
        )
    host = opts.endpoint.removeprefix("https://").rstrip("/")  # the SDK adds https://
    test_id = _test_id(opts)
    body = test_body(opts)  # refuses unmappable budgets before any request
    kwargs = {"api_version": API_VERSION, **client_kwargs}
    admin = LoadTestAdministrationClient(host, credential, **kwargs)
    runs = LoadTestRunClient(host, credential, **kwargs)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    run_id = f"{test_id}-{datetime.now(UTC):%Y%m%d%H%M%S}-{uuid.uuid4().hex[:6]}"
    try:
        admin.create_or_update_test(test_id, body)
        poller: Any = admin.begin_upload_test_file(
            test_id,
            "locustfile.py",
            io.BytesIO(opts.locustfile.encode()),
            file_type="TEST_SCRIPT",
            _polling_interval=opts.poll_interval,
        )
        uploaded = poller.result(timeout=opts.timeout_s)
        status = (uploaded or {}).get("validationStatus")
        if status not in ("VALIDATION_SUCCESS", "VALIDATION_NOT_REQUIRED"):
            detail = (uploaded or {}).get("validationFailureDetails") or status
            raise EmropsError(f"Azure Load Testing rejected the locustfile: {detail}")
        runs.begin_test_run(
            run_id,
            {"testId": test_id, "displayName": f"emrops {opts.scenario}"},
            _polling_interval=opts.poll_interval,
        )
        deadline = time.monotonic() + opts.timeout_s
        while True:
            run = dict(runs.get_test_run(run_id))
            if progress is not None:
                progress(run)
            if run.get("status") in TERMINAL:
                break
            if time.monotonic() > deadline:
                raise EmropsError(f"test run {run_id} did not finish within {opts.timeout_s:g}s")
            time.sleep(opts.poll_interval)
    except HttpResponseError as exc:
        message = exc.message.strip().splitlines()[0] if exc.message else str(exc.status_code)
        raise EmropsError(
            f"Azure Load Testing answered {exc.status_code}: {message}",
            hint="check the endpoint, your role (Load Test Contributor) and the test id",
        ) from None
    except ServiceRequestError as exc:
        raise EmropsError(
            f"cannot reach Azure Load Testing at {opts.endpoint}: {exc}",
            hint="check the endpoint and the network",
        ) from None
    if run.get("status") != "DONE":
        raise EmropsError(
            f"test run {run_id} ended {run.get('status')}: {run.get('errorDetails') or ''}".strip()
        )
    return _result(opts, run_id, started_at, run)


def _block(stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "count": int(stats.get("sampleCount") or 0),
        "errors": int(stats.get("errorCount") or 0),
        "rps": float(stats.get("throughput") or 0.0),
        "latency": {k: float(stats.get(v) or 0.0) for k, v in _STAT_FIELDS.items()},
    }


def _result(opts: CloudOptions, run_id: str, started_at: str, run: dict[str, Any]) -> dict:
    statistics = run.get("testRunStatistics") or {}
    total = _block(statistics.get("Total") or {})
    steps = {name: _block(s) for name, s in sorted(statistics.items()) if name != "Total"}
    summary = {
        "completed": total["count"],
        "errors": total["errors"],
        "rps": total["rps"],
        "latency": total["latency"],
        "error_rate": total["errors"] / total["count"] if total["count"] else 0.0,
        "steps": steps,
    }
    return {
        "schema": "emrops.loadtest-cloud/1",
        "started_at": started_at,
        "config": {
            "scenario": opts.scenario,
            "model": f"azure load testing, {opts.engines} engine(s) x {opts.users} users",
            "endpoint": opts.endpoint,
            "target": opts.target_url,
            "engines": opts.engines,
            "users": opts.users,
            "duration_s": opts.duration_s,
            "api_version": API_VERSION,
        },
        "run": {
            "id": run_id,
            "status": run.get("status"),
            "test_result": run.get("testResult"),
            "portal_url": run.get("portalUrl"),
        },
        "summary": summary,
        "budgets": budget_results(opts.budgets, run),
        "generator": {"reliable": True, "unreliable_reasons": []},
    }
