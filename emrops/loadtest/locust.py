"""``loadtest export --format locust``: the same journeys as a Locust file, for load beyond one
machine (``locust --processes N``, master/workers, or Azure Load Testing).

The file is self-contained (it needs only Locust): the same steps and request mix as
:mod:`emrops.loadtest.scenarios`, the total rate split evenly over Locust's users
(``constant_throughput``), the bearer token from ``EMROPS_SIM_TOKEN``, and the budgets checked
when Locust quits: a broken budget sets Locust's exit code to 3, as ``loadtest run`` does.
Latency in Locust is measured from the actual send (no coordinated-omission correction) and
rounded above 100 ms; budgets on ``late_rate``/``drop_rate`` have no Locust counterpart and
are refused.
"""

from __future__ import annotations

import json
import pprint
from dataclasses import dataclass

from emrops.errors import UsageError
from emrops.loadtest.budgets import Budget
from emrops.loadtest.scenarios import HISTORY_MESSAGES, MIXED, QUESTIONS, SCENARIOS

UNSUPPORTED_METRICS = {
    "late_rate": "Locust has no schedule, so nothing is late",
    "drop_rate": "Locust does not drop requests",
}


@dataclass(frozen=True)
class LocustExport:
    scenario: str
    rate: float | None
    budgets: list[Budget]
    text: str


def export(scenario: str, rate: float | None, budgets: list[Budget]) -> LocustExport:
    """The locustfile text for ``scenario`` at ``rate`` requests/s in total (None: as fast as
    the users go), checking ``budgets`` at the end. UsageError for what Locust cannot do."""
    if scenario not in SCENARIOS:
        raise UsageError(
            f"unknown scenario {scenario!r}", hint=f"use one of {', '.join(SCENARIOS)}"
        )
    if scenario == "ws-chat":
        raise UsageError(
            "scenario ws-chat cannot be exported to Locust: it has no WebSocket client",
            hint="export chat or mixed, or run ws-chat with `emrops loadtest run`",
        )
    if rate is not None and rate <= 0:
        raise UsageError(f"--rate must be positive, not {rate:g}")
    for budget in budgets:
        if budget.metric in UNSUPPORTED_METRICS:
            raise UsageError(
                f"budget {budget.expr!r} has no Locust counterpart: "
                f"{UNSUPPORTED_METRICS[budget.metric]}",
                hint="drop it from the export, or keep it for `emrops loadtest run`",
            )
    spec = [
        {"expr": b.expr, "metric": b.metric, "op": b.op, "threshold": b.threshold, "step": b.step}
        for b in budgets
    ]
    steps = list(MIXED) if scenario == "mixed" else [scenario]
    text = (
        _TEMPLATE.replace("@SCENARIO@", json.dumps(scenario))
        .replace("@RATE@", repr(rate))
        .replace("@STEPS@", json.dumps(steps))
        .replace("@QUESTIONS@", json.dumps(list(QUESTIONS), indent=4))
        .replace("@HISTORY@", str(HISTORY_MESSAGES))
        .replace("@BUDGETS@", pprint.pformat(spec, width=90, sort_dicts=False))
    )
    return LocustExport(scenario, rate, list(budgets), text)


_TEMPLATE = '''"""EMRsim load test for Locust, written by `emrops loadtest export --format locust`.

Run: EMROPS_SIM_TOKEN=... locust -f THIS_FILE --headless -u USERS -r USERS -t 60s --host URL
Exit code 3 when a budget below is broken (as `emrops loadtest run`), 1 on Locust errors.
"""

import itertools
import os
import sys

from locust import HttpUser, constant, constant_throughput, events, task

SCENARIO = @SCENARIO@
RATE = @RATE@  # requests/s over all users; None: as fast as they go
STEPS = @STEPS@  # request i performs STEPS[i % len(STEPS)]
QUESTIONS = @QUESTIONS@
HISTORY_MESSAGES = @HISTORY@
BUDGETS = @BUDGETS@
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class EmrsimUser(HttpUser):
    def wait_time(self):
        if RATE is None:
            return constant(0)(self)
        # -u is the total over all processes (--processes, master/workers): each user takes
        # its share of RATE, whichever process runs it
        options = getattr(self.environment, "parsed_options", None)
        users = getattr(options, "num_users", None)
        if not users:
            users = getattr(self.environment.runner, "target_user_count", None) or 1
        return constant_throughput(RATE / max(1, users))(self)

    def on_start(self):
        token = os.environ.get("EMROPS_SIM_TOKEN")
        if token:
            self.client.headers["Authorization"] = "Bearer " + token
        self.counter = itertools.count()
        self.sessions = []
        if SCENARIO == "health":
            return
        with self.client.get("/api/scenarios", name="setup", catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure("GET /api/scenarios answered %d" % resp.status_code)
                raise RuntimeError("cannot read the scenarios: HTTP %d" % resp.status_code)
            self.scenario_id = resp.json()["items"][0]["id"]
        self.sessions.append(self._new_session(name="setup"))
        if SCENARIO in ("history", "mixed"):
            for n in range(HISTORY_MESSAGES):
                self._post(self.sessions[0], QUESTIONS[n % len(QUESTIONS)], name="setup")

    def _new_session(self, name):
        body = {"scenario_id": self.scenario_id}
        resp = self.client.post("/api/sessions", json=body, name=name)
        return resp.json()["id"] if resp.status_code == 201 else None

    def _post(self, sid, content, name):
        self.client.post("/api/sessions/%s/messages" % sid, json={"content": content}, name=name)

    @task
    def step(self):
        i = next(self.counter)
        step = STEPS[i % len(STEPS)]
        if step == "health":
            self.client.get("/health", name="health")
        elif step == "session":
            self._new_session(name="session")
        elif step == "chat":
            self._post(self.sessions[0], QUESTIONS[i % len(QUESTIONS)], name="chat")
        elif step == "history":
            self.client.get(
                "/api/sessions/%s/messages?after=0&limit=50" % self.sessions[0], name="history"
            )


def _entry(stats, step):
    if step is None:
        return stats.total
    for entry in stats.entries.values():
        if entry.name == step:
            return entry
    return None


def _actual(entry, metric):
    if entry is None or entry.num_requests == 0:
        return None
    if metric in PERCENTILES:
        return entry.get_response_time_percentile(PERCENTILES[metric]) / 1000.0
    if metric == "min":
        return (entry.min_response_time or 0) / 1000.0
    if metric == "max":
        return entry.max_response_time / 1000.0
    if metric == "mean":
        return entry.avg_response_time / 1000.0
    if metric == "error_rate":
        return entry.fail_ratio
    if metric == "rps":
        return entry.total_rps
    return None


def _holds(op, actual, threshold):
    return {
        "<": actual < threshold,
        "<=": actual <= threshold,
        ">": actual > threshold,
        ">=": actual >= threshold,
    }[op]


@events.quitting.add_listener
def _check_budgets(environment, **_kwargs):
    broken = []
    for budget in BUDGETS:
        actual = _actual(_entry(environment.stats, budget["step"]), budget["metric"])
        if actual is None or not _holds(budget["op"], actual, budget["threshold"]):
            shown = "no requests" if actual is None else "%.4g" % actual
            broken.append("%s (actual %s)" % (budget["expr"], shown))
    if broken:
        sys.stderr.write("budget broken: %s\\n" % ", ".join(broken))
        environment.process_exit_code = 3
'''
