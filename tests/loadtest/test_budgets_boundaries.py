"""Boundary tests for budgets: each operator at the threshold, value ranges, formatting."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrops.errors import UsageError
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
)


@pytest.mark.parametrize(
    ("expr", "below", "at", "above"),
    [
        ("rps<10", True, False, False),
        ("rps<=10", True, True, False),
        ("rps>10", False, False, True),
        ("rps>=10", False, True, True),
    ],
)
def test_each_operator_below_at_and_above_the_threshold(
    expr: str, below: bool, at: bool, above: bool
) -> None:
    b = parse_budget(expr)
    assert (b.holds(9.5), b.holds(10.0), b.holds(10.5)) == (below, at, above)


def test_latency_formatting_switches_to_seconds_at_one_second() -> None:
    assert format_value("p95", 0.999) == "999.0ms"
    assert format_value("p95", 1.0) == "1.000s"
    assert format_value("max", 2.5) == "2.500s"


def test_rate_and_count_formatting() -> None:
    assert format_value("error_rate", 0.0123) == "1.23%"
    assert format_value("drop_rate", 1.0) == "100.00%"
    assert format_value("rps", 12.34) == "12.3"


@pytest.mark.parametrize(("text", "value"), [("0", 0.0), ("1", 1.0), ("100%", 1.0), ("0%", 0.0)])
def test_rate_bounds_are_inclusive(text: str, value: float) -> None:
    assert parse_budget(f"error_rate<={text}").threshold == value


@pytest.mark.parametrize("text", ["-0.01", "1.0001", "100.01%"])
def test_rates_outside_zero_to_one_are_refused(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_budget(f"error_rate<{text}")
    assert info.value.message == f"budget 'error_rate<{text}': a rate is 0..1 or 0%..100%"


def test_counts_zero_ok_negative_refused_per_second_suffix() -> None:
    assert parse_budget("rps>=0").threshold == 0.0
    assert parse_budget("rps>=45/s").threshold == 45.0
    with pytest.raises(UsageError) as info:
        parse_budget("rps>=-1")
    assert info.value.message == "budget 'rps>=-1': must not be negative"


def test_latency_with_a_decimal_but_no_unit_is_refused() -> None:
    with pytest.raises(UsageError) as info:
        parse_budget("p95<2.5")
    assert info.value.message == "budget 'p95<2.5': latency needs a unit"


def test_expr_is_stripped_and_names_include_the_step() -> None:
    b = parse_budget("  chat.p99 <= 3s  ")
    assert (b.expr, b.name, b.step) == ("chat.p99 <= 3s", "chat.p99", "chat")
    assert parse_budget("p99<3s").name == "p99"


def test_result_describe_and_as_dict() -> None:
    b = Budget("chat.p95<2s", "p95", "<", 2.0, "chat")
    assert BudgetResult(b, None, True).describe() == "chat.p95<2s: no requests for chat"
    whole = Budget("p95<2s", "p95", "<", 2.0)
    assert BudgetResult(whole, None, True).describe() == "p95<2s: no requests for the run"
    assert BudgetResult(b, 0.25, True).describe() == "chat.p95<2s: chat.p95 = 250.0ms"
    assert BudgetResult(b, 2.5, False).as_dict() == {
        "expr": "chat.p95<2s",
        "metric": "p95",
        "step": "chat",
        "op": "<",
        "threshold": 2.0,
        "actual": 2.5,
        "passed": False,
    }


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


def test_unknown_names_have_exact_messages() -> None:
    with pytest.raises(UsageError) as info:
        parse_budget("chats.p95<2s")
    assert info.value.message == "unknown step 'chats' in budget 'chats.p95<2s'"
    assert info.value.hint == f"steps: {', '.join(STEPS)}"
    with pytest.raises(UsageError) as info:
        parse_budget("p59<2s")
    assert info.value.message == "unknown metric 'p59' in budget 'p59<2s'"
    assert str(info.value.hint).startswith("write METRIC OP VALUE, e.g. 'p95<2s'")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[budgets]\np95 = "<2s"\n[extra]\nx = 1\n', "unknown table(s) extra"),
        ("[budgets]\n", "has no [budgets] table"),
    ],
)
def test_budget_file_tables(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_file(path)
    assert message in info.value.message


def test_budget_file_missing_and_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        load_file(tmp_path / "nope.toml")
    assert info.value.message == f"budgets file {tmp_path / 'nope.toml'} does not exist"
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"\xff\xfe[budgets]")
    with pytest.raises(UsageError) as info:
        load_file(bad)
    assert info.value.message.startswith(f"cannot read budgets file {bad}")


HINT_START = "write METRIC OP VALUE, e.g. 'p95<2s', 'error_rate<1%'"


@pytest.mark.parametrize(
    ("expr", "message", "hint"),
    [
        ("p95<2", "budget 'p95<2': latency needs a unit",
         "e.g. 'p95<2s' or 'p95<250ms' (a bare number would be ambiguous)"),
        ("error_rate<lots", "budget 'error_rate<lots': 'lots' is not a rate", "e.g. 1% or 0.01"),
        ("error_rate<2", "budget 'error_rate<2': a rate is 0..1 or 0%..100%", "e.g. 1%"),
        ("rps>many", "budget 'rps>many': 'many' is not a number", "e.g. 'rps>=45'"),
    ],
)  # fmt: skip
def test_value_errors_have_exact_messages_and_hints(expr: str, message: str, hint: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_budget(expr)
    assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("!!", "malformed budget '!!'"),
        ("p95 2s", "malformed budget 'p95 2s': expected an operator and a value"),
    ],
)
def test_malformed_budgets_carry_the_grammar_hint(expr: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_budget(expr)
    assert info.value.message == message
    assert str(info.value.hint).startswith(HINT_START)


def test_table_errors_name_the_source_and_the_budget() -> None:
    from emrops.loadtest.budgets import parse_table

    with pytest.raises(UsageError) as info:
        parse_table({"p95": 2})
    assert info.value.message == 'budgets: p95 = 2 must be a string such as "<2s"'
    assert str(info.value.hint).startswith(HINT_START)
    with pytest.raises(UsageError) as info:
        parse_table({"chat": {"p95": 2}}, source="f.toml")
    assert info.value.message == 'f.toml: chat.p95 = 2 must be a string such as "<2s"'
    with pytest.raises(UsageError) as info:
        parse_table({"chatt": {"p95": "<2s"}}, source="f.toml")
    assert info.value.message == "f.toml: unknown step [budgets.chatt]"
    assert info.value.hint == f"steps: {', '.join(STEPS)}"
    with pytest.raises(UsageError) as info:
        parse_table({"p95s": "<2s"})
    assert info.value.message == "unknown metric 'p95s' in budget 'p95s<2s'"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("[budgets]\n")
    with pytest.raises(UsageError) as info:
        load_file(empty)
    assert info.value.hint == 'add e.g. [budgets] p95 = "<2s"'
    extra = tmp_path / "extra.toml"
    extra.write_text('[budgets]\np95 = "<2s"\n[a]\nx = 1\n[b]\ny = 2\n')
    with pytest.raises(UsageError) as info:
        load_file(extra)
    assert info.value.message == f"budgets file {extra}: unknown table(s) a, b"
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("[budgets]\np95 = 2\n")
    with pytest.raises(UsageError) as info:
        load_file(wrong)
    assert info.value.message == f'{wrong}: p95 = 2 must be a string such as "<2s"'
