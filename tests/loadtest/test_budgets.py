"""The budget grammar: flags and TOML are one grammar; typos are errors, never passes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emrops.errors import UsageError
from emrops.loadtest.budgets import (
    LATENCY_METRICS,
    RATE_METRICS,
    STEPS,
    load_file,
    parse_budget,
    parse_table,
)


@pytest.mark.parametrize(
    ("expr", "metric", "op", "threshold", "step"),
    [
        ("p95<2s", "p95", "<", 2.0, None),
        ("p99 <= 1500ms", "p99", "<=", 1.5, None),
        ("error_rate<1%", "error_rate", "<", 0.01, None),
        ("late_rate<0.05", "late_rate", "<", 0.05, None),
        ("ws-chat.p95<3s", "p95", "<", 3.0, "ws-chat"),
        ("rps>=45", "rps", ">=", 45.0, None),
        ("chat.max>1ms", "max", ">", 0.001, "chat"),
    ],
)
def test_parse(expr: str, metric: str, op: str, threshold: float, step: str | None) -> None:
    b = parse_budget(expr)
    assert (b.metric, b.op, b.step) == (metric, op, step)
    assert b.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("p59<2s", "unknown metric 'p59'"),
        ("http_req_duration<2s", "unknown metric"),
        ("chats.p95<2s", "unknown step 'chats'"),
        ("p95 2s", "expected an operator"),
        ("p95<2", "latency needs a unit"),
        ("p95<fast", "invalid latency"),
        ("error_rate<150%", "a rate is 0..1"),
        ("error_rate<2", "a rate is 0..1"),
        ("rps>many", "not a number"),
        ("", "malformed budget"),
    ],
)
def test_rejects(expr: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_budget(expr)
    assert message in info.value.message or message in str(info.value.hint)


def test_holds() -> None:
    assert parse_budget("p95<2s").holds(1.999)
    assert not parse_budget("p95<2s").holds(2.0)
    assert parse_budget("p95<=2s").holds(2.0)
    assert parse_budget("rps>10").holds(10.5)
    assert not parse_budget("rps>=10").holds(9.9)


@given(
    metric=st.sampled_from(sorted(LATENCY_METRICS)),
    op=st.sampled_from(["<", "<=", ">", ">="]),
    ms=st.integers(min_value=1, max_value=10**7),
    step=st.none() | st.sampled_from(STEPS),
)
def test_flag_and_toml_are_one_grammar(metric: str, op: str, ms: int, step: str | None) -> None:
    flag = parse_budget(f"{step + '.' if step else ''}{metric}{op}{ms}ms")
    table = {step: {metric: f"{op}{ms}ms"}} if step else {metric: f"{op}{ms}ms"}
    (from_toml,) = parse_table(table)
    assert (flag.metric, flag.op, flag.step) == (from_toml.metric, from_toml.op, from_toml.step)
    assert flag.threshold == pytest.approx(ms / 1000) == pytest.approx(from_toml.threshold)


@given(rate=st.sampled_from(RATE_METRICS), pct=st.integers(min_value=0, max_value=100))
def test_rates_as_percent_or_fraction(rate: str, pct: int) -> None:
    assert parse_budget(f"{rate}<{pct}%").threshold == pytest.approx(
        parse_budget(f"{rate}<{pct / 100}").threshold
    )


def test_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(
        '[budgets]\np95 = "<2s"\nerror_rate = "<1%"\n\n[budgets.chat]\np99 = ["<3s", ">1ms"]\n'
    )
    found = load_file(path)
    assert [(b.name, b.op, b.threshold) for b in found] == [
        ("p95", "<", 2.0),
        ("error_rate", "<", 0.01),
        ("chat.p99", "<", 3.0),
        ("chat.p99", ">", 0.001),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[budgets]\np95s = "<2s"\n', "unknown metric 'p95s'"),
        ('[budgets.chatt]\np95 = "<2s"\n', "unknown step [budgets.chatt]"),
        ("[budgets]\np95 = 2\n", "must be a string"),
        ('[budget]\np95 = "<2s"\n', "no [budgets] table"),
        ("[budgets\n", "not valid TOML"),
    ],
)
def test_toml_file_rejects(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "budgets.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_file(path)
