"""Budgets: pass/fail conditions on a load-test result, one grammar for flags and TOML.

On the command line a budget is ``[STEP.]METRIC OP VALUE``::

    p95<2s            error_rate<1%          chat.p99<=1500ms        rps>=45

In a TOML file the same budget is ``METRIC = "OP VALUE"`` in ``[budgets]``, or in
``[budgets.STEP]`` for one step of the journey (a list of strings gives several conditions)::

    [budgets]
    p95 = "<2s"
    error_rate = "<1%"

    [budgets.ws-chat]
    p99 = ["<3s", ">1ms"]

An unknown metric or step is an error (exit 2), never a silently passing budget.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops.errors import UsageError
from emrops.units import parse_duration, parse_percent

# metric -> kind; latency metrics are read from the merged HdrHistogram
LATENCY_METRICS: dict[str, float] = {
    "min": 0.0,
    "p50": 50.0,
    "p90": 90.0,
    "p95": 95.0,
    "p99": 99.0,
    "p999": 99.9,
    "max": 100.0,
    "mean": -1.0,  # not a percentile: the histogram's mean
}
RATE_METRICS = ("error_rate", "late_rate", "drop_rate")
COUNT_METRICS = ("rps",)
METRICS = (*LATENCY_METRICS, *RATE_METRICS, *COUNT_METRICS)
STEPS = ("health", "session", "chat", "history", "ws-chat")
OPERATORS = ("<=", ">=", "<", ">")

_EXPR = re.compile(r"^\s*(?:(?P<step>[a-z][a-z-]*)\.)?(?P<metric>[a-z0-9_]+)\s*(?P<cond>.*)$")
_COND = re.compile(r"^\s*(?P<op><=|>=|<|>)\s*(?P<value>\S.*?)\s*$")
_HINT = (
    "write METRIC OP VALUE, e.g. 'p95<2s', 'error_rate<1%', 'chat.p99<=1500ms' or 'rps>=45'; "
    f"metrics: {', '.join(METRICS)}"
)


@dataclass(frozen=True)
class Budget:
    """One condition: ``metric op threshold`` on the whole run (``step`` None) or one step.

    ``threshold`` is in seconds for latency metrics, a fraction for rates, a number for rps.
    """

    expr: str
    metric: str
    op: str
    threshold: float
    step: str | None = None

    @property
    def name(self) -> str:
        return f"{self.step}.{self.metric}" if self.step else self.metric

    def holds(self, actual: float) -> bool:
        if self.op == "<":
            return actual < self.threshold
        if self.op == "<=":
            return actual <= self.threshold
        if self.op == ">":
            return actual > self.threshold
        return actual >= self.threshold


def _value(metric: str, text: str, expr: str) -> float:
    if metric in LATENCY_METRICS:
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text):
            raise UsageError(
                f"budget {expr!r}: latency needs a unit",
                hint="e.g. 'p95<2s' or 'p95<250ms' (a bare number would be ambiguous)",
            )
        return parse_duration(text, what=f"latency in budget {expr!r}")
    if metric in RATE_METRICS:
        if "%" in text:
            fraction = parse_percent(text)
        else:
            try:
                fraction = float(text)
            except ValueError:
                raise UsageError(
                    f"budget {expr!r}: {text!r} is not a rate", hint="e.g. 1% or 0.01"
                ) from None
        if not 0.0 <= fraction <= 1.0:
            raise UsageError(f"budget {expr!r}: a rate is 0..1 or 0%..100%", hint="e.g. 1%")
        return fraction
    try:
        number = float(text.removesuffix("/s"))
    except ValueError:
        raise UsageError(
            f"budget {expr!r}: {text!r} is not a number", hint="e.g. 'rps>=45'"
        ) from None
    if number < 0:
        raise UsageError(f"budget {expr!r}: must not be negative")
    return number


def _check_names(metric: str, step: str | None, expr: str) -> None:
    if metric not in METRICS:
        raise UsageError(f"unknown metric {metric!r} in budget {expr!r}", hint=_HINT)
    if step is not None and step not in STEPS:
        raise UsageError(
            f"unknown step {step!r} in budget {expr!r}", hint=f"steps: {', '.join(STEPS)}"
        )


def parse_budget(expr: str) -> Budget:
    """Parse one command-line budget; UsageError (exit 2) names what is wrong."""
    match = _EXPR.fullmatch(expr)
    if not match:
        raise UsageError(f"malformed budget {expr!r}", hint=_HINT)
    step, metric = match.group("step"), match.group("metric")
    _check_names(metric, step, expr)
    return _condition(metric, step, match.group("cond"), expr)


def _condition(metric: str, step: str | None, cond: str, expr: str) -> Budget:
    found = _COND.fullmatch(cond)
    if not found:
        raise UsageError(f"malformed budget {expr!r}: expected an operator and a value", hint=_HINT)
    threshold = _value(metric, found.group("value"), expr)
    return Budget(expr.strip(), metric, found.group("op"), threshold, step)


def parse_table(table: dict[str, Any], *, source: str = "budgets") -> list[Budget]:
    """Budgets from a ``[budgets]`` table (already parsed TOML)."""
    out: list[Budget] = []
    for key, value in table.items():
        if isinstance(value, dict):  # [budgets.STEP]
            if key not in STEPS:
                raise UsageError(
                    f"{source}: unknown step [budgets.{key}]", hint=f"steps: {', '.join(STEPS)}"
                )
            for metric, cond in value.items():
                out += _conditions(metric, key, cond, source)
        else:
            out += _conditions(key, None, value, source)
    return out


def _conditions(metric: str, step: str | None, value: Any, source: str) -> list[Budget]:
    conds = value if isinstance(value, list) else [value]
    out = []
    for cond in conds:
        name = f"{step}.{metric}" if step else metric
        if not isinstance(cond, str):
            raise UsageError(
                f'{source}: {name} = {cond!r} must be a string such as "<2s"', hint=_HINT
            )
        expr = f"{name}{cond.strip()}"
        _check_names(metric, step, expr)
        out.append(_condition(metric, step, cond, expr))
    return out


def load_file(path: Path) -> list[Budget]:
    """Budgets from a TOML file with a ``[budgets]`` table."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"budgets file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read budgets file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"budgets file {path} is not valid TOML: {exc}") from None
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"budgets file {path} is nested too deeply to read") from None
    table = data.get("budgets")
    if not isinstance(table, dict) or not table:
        raise UsageError(
            f"budgets file {path} has no [budgets] table", hint='add e.g. [budgets] p95 = "<2s"'
        )
    unknown = sorted(set(data) - {"budgets"})
    if unknown:
        raise UsageError(f"budgets file {path}: unknown table(s) {', '.join(unknown)}")
    return parse_table(table, source=str(path))


@dataclass(frozen=True)
class BudgetResult:
    budget: Budget
    actual: float | None  # None: the step had no requests
    passed: bool

    def describe(self) -> str:
        b = self.budget
        if self.actual is None:
            return f"{b.expr}: no requests for {b.step or 'the run'}"
        return f"{b.expr}: {b.name} = {format_value(b.metric, self.actual)}"

    def as_dict(self) -> dict[str, Any]:
        b = self.budget
        return {
            "expr": b.expr,
            "metric": b.metric,
            "step": b.step,
            "op": b.op,
            "threshold": b.threshold,
            "actual": self.actual,
            "passed": self.passed,
        }


def format_value(metric: str, value: float) -> str:
    if metric in LATENCY_METRICS:
        return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.3f}s"
    if metric in RATE_METRICS:
        return f"{value * 100:.2f}%"
    return f"{value:.1f}"
