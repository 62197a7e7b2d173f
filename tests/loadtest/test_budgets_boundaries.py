"""Budgets at their edges: each test kills mutants of budgets.py that test_budgets.py let
survive (`make mutation`): an operator compared the wrong way, ``>`` against ``>=`` at the
threshold, the figures a failing budget prints, and the messages of rejected budgets.

(One file: the two boundary sets written in parallel for #19, merged without duplicates.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from emrops.errors import UsageError
from emrops.loadtest import budgets
from emrops.loadtest.budgets import (
    LATENCY_METRICS,
    METRICS,
    RATE_METRICS,
    STEPS,
    Budget,
    BudgetResult,
    format_value,
    load_file,
    parse_budget,
    parse_table,
)


@pytest.mark.parametrize(
    ("op", "below", "at", "above"),
    [
        ("<", True, False, False),
        ("<=", True, True, False),
        (">", False, False, True),
        (">=", False, True, True),
    ],
)
def test_each_operator_just_below_at_and_just_above_the_threshold(
    op: str, below: bool, at: bool, above: bool
) -> None:
    budget = parse_budget(f"rps{op}10")
    assert budget.op == op
    assert (budget.holds(9.999), budget.holds(10.0), budget.holds(10.001)) == (below, at, above)


@pytest.mark.parametrize(
    ("metric", "value", "shown"),
    [
        ("p95", 0.2504, "250.4ms"),
        ("p95", 0.99949, "999.5ms"),
        ("p95", 0.999, "999.0ms"),
        ("p95", 1.0, "1.000s"),  # one second is shown in seconds: `< 1` switches
        ("p95", 2.34567, "2.346s"),
        ("max", 2.5, "2.500s"),
        ("mean", 0.0, "0.0ms"),
        ("error_rate", 0.0123, "1.23%"),
        ("error_rate", 0.0, "0.00%"),
        ("late_rate", 1.0, "100.00%"),
        ("drop_rate", 1.0, "100.00%"),
        ("rps", 45.26, "45.3"),
        ("rps", 0.0, "0.0"),
        ("rps", 12.34, "12.3"),
    ],
)
def test_format_value(metric: str, value: float, shown: str) -> None:
    assert format_value(metric, value) == shown


def test_a_result_describes_its_figure_or_the_missing_requests() -> None:
    rate = BudgetResult(parse_budget("error_rate<1%"), 0.0234, False)
    assert rate.describe() == "error_rate<1%: error_rate = 2.34%"
    step = BudgetResult(parse_budget("chat.p99<=1500ms"), 1.6, False)
    assert step.describe() == "chat.p99<=1500ms: chat.p99 = 1.600s"
    assert BudgetResult(parse_budget("chat.p95<2s"), None, False).describe() == (
        "chat.p95<2s: no requests for chat"
    )
    assert BudgetResult(parse_budget("p95<2s"), None, False).describe() == (
        "p95<2s: no requests for the run"
    )


def test_a_result_as_json() -> None:
    result = BudgetResult(parse_budget(" ws-chat.p95 > 5ms "), 0.004, False)
    assert result.as_dict() == {
        "expr": "ws-chat.p95 > 5ms",
        "metric": "p95",
        "step": "ws-chat",
        "op": ">",
        "threshold": 0.005,
        "actual": 0.004,
        "passed": False,
    }


def test_an_expression_is_stripped_and_its_name_includes_the_step() -> None:
    b = parse_budget("  chat.p99 <= 3s  ")
    assert (b.expr, b.name, b.step) == ("chat.p99 <= 3s", "chat.p99", "chat")
    assert parse_budget("p99<3s").name == "p99"


def test_metric_tables() -> None:
    assert LATENCY_METRICS == {
        "min": 0.0,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "p999": 99.9,
        "max": 100.0,
        "mean": -1.0,
    }
    assert RATE_METRICS == ("error_rate", "late_rate", "drop_rate")
    assert (*LATENCY_METRICS, *RATE_METRICS, "rps") == METRICS
    assert STEPS == ("health", "session", "chat", "history", "ws-chat")


def test_a_budget_names_its_step() -> None:
    assert Budget("p95<2s", "p95", "<", 2.0).name == "p95"
    assert Budget("chat.p95<2s", "p95", "<", 2.0, "chat").name == "chat.p95"
    assert Budget("p95<2s", "p95", "<", 2.0).step is None


@pytest.mark.parametrize(
    ("expr", "threshold"),
    [
        ("error_rate<=0%", 0.0),
        ("error_rate<=100%", 1.0),
        ("error_rate<0", 0.0),
        ("error_rate<1", 1.0),
        ("rps>=0", 0.0),
        ("rps>=45/s", 45.0),
        ("p95<1.5s", 1.5),
    ],
)
def test_the_edges_of_each_range_are_accepted(expr: str, threshold: float) -> None:
    assert parse_budget(expr).threshold == pytest.approx(threshold)


HINT_START = "write METRIC OP VALUE, e.g. 'p95<2s', 'error_rate<1%'"


@pytest.mark.parametrize(
    ("expr", "message", "hint"),
    [
        ("p95<2", "budget 'p95<2': latency needs a unit", "a bare number would be ambiguous"),
        ("p95<2.5", "budget 'p95<2.5': latency needs a unit", "e.g. 'p95<2s' or 'p95<250ms'"),
        ("error_rate<lots", "budget 'error_rate<lots': 'lots' is not a rate", "e.g. 1% or 0.01"),
        ("error_rate<1.01", "budget 'error_rate<1.01': a rate is 0..1 or 0%..100%", "e.g. 1%"),
        ("error_rate<1.0001", "budget 'error_rate<1.0001': a rate is 0..1 or 0%..100%", "e.g. 1%"),
        ("error_rate<100.01%", "budget 'error_rate<100.01%': a rate is 0..1 or 0%..100%",
         "e.g. 1%"),
        ("error_rate<-0.01", "budget 'error_rate<-0.01': a rate is 0..1 or 0%..100%", "e.g. 1%"),
        ("rps>many", "budget 'rps>many': 'many' is not a number", "e.g. 'rps>=45'"),
        ("rps>-1", "budget 'rps>-1': must not be negative", None),
        ("rps>=-1", "budget 'rps>=-1': must not be negative", None),
        ("chats.p95<2s", "unknown step 'chats' in budget 'chats.p95<2s'", "steps: health, "),
        ("p59<2s", "unknown metric 'p59' in budget 'p59<2s'", HINT_START),
        ("p95", "malformed budget 'p95': expected an operator and a value", HINT_START),
        ("p95 2s", "malformed budget 'p95 2s': expected an operator and a value", HINT_START),
        ("!!", "malformed budget '!!'", HINT_START),
        ("P95<2s", "malformed budget 'P95<2s'", "metrics: min, p50"),
    ],
)  # fmt: skip
def test_rejections_say_what_is_wrong(expr: str, message: str, hint: str | None) -> None:
    with pytest.raises(UsageError) as info:
        parse_budget(expr)
    assert info.value.message == message
    if hint is None:
        assert info.value.hint is None
    elif hint.endswith(", ") or hint == HINT_START:  # a list of names or the grammar: its start
        assert (info.value.hint or "").startswith(hint)
    else:
        assert hint in (info.value.hint or "")


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("p95<2", "e.g. 'p95<2s' or 'p95<250ms' (a bare number would be ambiguous)"),
        ("error_rate<lots", "e.g. 1% or 0.01"),
        ("error_rate<101%", "e.g. 1%"),
        ("rps>many", "e.g. 'rps>=45'"),
        ("chats.p95<2s", "steps: health, session, chat, history, ws-chat"),
    ],
)
def test_rejection_hints_are_exact(expr: str, hint: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_budget(expr)
    assert info.value.hint == hint


def test_table_conditions_keep_their_step_and_expression() -> None:
    found = parse_table({"p95": " <2s", "chat": {"p99": ["<3s", ">=1ms"]}})
    assert [(b.expr, b.name, b.op, b.threshold) for b in found] == [
        ("p95<2s", "p95", "<", 2.0),
        ("chat.p99<3s", "chat.p99", "<", 3.0),
        ("chat.p99>=1ms", "chat.p99", ">=", 0.001),
    ]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"chatt": {"p95": "<2s"}}, "budgets: unknown step [budgets.chatt]"),
        ({"p95": 2}, 'budgets: p95 = 2 must be a string such as "<2s"'),
        ({"chat": {"p95": [2]}}, 'budgets: chat.p95 = 2 must be a string such as "<2s"'),
        ({"chat": {"p95s": "<2s"}}, "unknown metric 'p95s' in budget 'chat.p95s<2s'"),
    ],
)
def test_table_rejections(table: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_table(table)
    assert info.value.message == message
    if "unknown step" in message:
        assert info.value.hint == "steps: health, session, chat, history, ws-chat"
    else:
        assert (info.value.hint or "").startswith("write METRIC OP VALUE, e.g. 'p95<2s'")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[budgets.chatt]\np95 = "<2s"\n', "{path}: unknown step [budgets.chatt]"),
        ("[budgets]\np95 = 2\n", '{path}: p95 = 2 must be a string such as "<2s"'),
    ],
)
def test_file_rejections_from_the_table_name_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UsageError) as info:
        load_file(path)
    assert info.value.message == message.format(path=path)


def test_a_budgets_file_is_utf8_whatever_the_locale(tmp_path: Path) -> None:
    # cron runs with LANG=C: a comment in a budgets file must still read as UTF-8
    path = tmp_path / "budgets.toml"
    path.write_text('# Latenz für den Chat — ≤ 2 s\n[budgets]\np95 = "<2s"\n', encoding="utf-8")
    assert [b.expr for b in load_file(path)] == ["p95<2s"]
    package_root = Path(budgets.__file__).resolve().parents[2]  # the emrops under test
    env = {
        **os.environ,
        "LC_ALL": "C",
        "LANG": "C",
        "PYTHONCOERCECLOCALE": "0",
        "PYTHONUTF8": "0",
        "PYTHONPATH": str(package_root),
    }
    code = (
        "import sys; from pathlib import Path\n"
        "from emrops.loadtest.budgets import load_file\n"
        "print([b.expr for b in load_file(Path(sys.argv[1]))])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)],
        env=env,
        cwd=package_root,  # under `make mutation`, mutmut's copy needs its own config here
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "['p95<2s']"), done.stderr


def test_file_rejections_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(UsageError) as info:
        load_file(missing)
    assert info.value.message == f"budgets file {missing} does not exist"
    extra = tmp_path / "extra.toml"
    extra.write_text('[budgets]\np95 = "<2s"\n[limits]\nx = 1\n[alpha]\ny = 2\n')
    with pytest.raises(UsageError) as info:
        load_file(extra)
    assert info.value.message == f"budgets file {extra}: unknown table(s) alpha, limits"
    empty = tmp_path / "empty.toml"
    empty.write_text("[budgets]\n")
    with pytest.raises(UsageError) as info:
        load_file(empty)
    assert info.value.message == f"budgets file {empty} has no [budgets] table"
    assert info.value.hint == 'add e.g. [budgets] p95 = "<2s"'
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[budgets]\np95 = "\xff"\n')
    with pytest.raises(UsageError, match=f"cannot read budgets file {bad}"):
        load_file(bad)
    step_file = tmp_path / "step.toml"
    step_file.write_text('[budgets.chat]\np95 = "<2s"\n')
    with pytest.raises(UsageError, match=r"^unknown metric 'p95s'"):
        parse_table({"p95s": "<2s"}, source=str(step_file))
    with pytest.raises(UsageError) as info:
        parse_table({"chatt": {}}, source=str(step_file))
    assert info.value.message.startswith(f"{step_file}: unknown step")


@pytest.mark.parametrize(
    ("processes", "rate", "closed", "used"),
    [(64, 5.0, None, 5), (64, 0.5, None, 1), (2, 500.0, None, 2), (64, None, 3, 3)],
)
def test_generator_processes_never_exceed_the_work(
    processes: int, rate: float | None, closed: int | None, used: int
) -> None:
    """`--processes auto` on a big machine starts no more generators than the rate (one
    request per second each) or the virtual users can keep busy."""
    from emrops.loadtest.run import LoadtestOptions, make_plan

    plan, _budgets = make_plan(
        LoadtestOptions(
            urls=["http://127.0.0.1:8000"], rate=rate, closed=closed, processes=processes
        )
    )
    assert plan.processes == used
