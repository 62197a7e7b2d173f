"""loadtest cloud: the real azure-developer-loadtesting SDK against a local TLS fake."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrops.loadtest.budgets import parse_budget
from emrops.loadtest.cloud import API_VERSION, budget_results, criterion_for
from tests.loadtest.fake_alt import TOKEN, FakeLoadTesting

GOOD = {
    "sampleCount": 1000, "errorCount": 2, "errorPct": 0.2, "throughput": 48.5,
    "meanResTime": 120.0, "medianResTime": 100.0, "pct1ResTime": 180.0,
    "pct2ResTime": 250.0, "pct3ResTime": 400.0, "maxResTime": 900.0, "minResTime": 5.0,
}  # fmt: skip


@pytest.fixture
def alt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLoadTesting]:
    fake = FakeLoadTesting(tmp_path).start()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(fake.ca))  # trust the test CA only
    monkeypatch.setenv("EMROPS_AZURE_ACCESS_TOKEN", TOKEN)
    fake.statistics = {"Total": dict(GOOD), "chat": dict(GOOD, sampleCount=500)}
    try:
        yield fake
    finally:
        fake.stop()


def _cloud(cli, alt, *extra: str):
    return cli(
        "loadtest", "cloud", "--endpoint", alt.endpoint, "--url", "https://emrsim.example.org",
        "--scenario", "mixed", "--rate", "100/s", "--engines", "3", "--users", "20",
        "--duration", "2m", "--poll-interval", "0.05s", *extra,
    )  # fmt: skip


def test_cloud_run_passes_and_prints_the_table(cli, alt, tmp_path):
    junit = tmp_path / "lt.xml"
    result = _cloud(
        cli, alt, "--budget", "p95<2s", "--budget", "error_rate<1%", "--budget", "chat.p99<1s",
        "--junit", str(junit), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert [b["passed"] for b in data["budgets"]] == [True, True, True]
    assert data["budgets"][0]["actual"] == pytest.approx(0.25)
    assert data["budgets"][1]["actual"] == pytest.approx(0.002)
    assert data["summary"]["completed"] == 1000 and data["summary"]["steps"]["chat"]["count"] == 500
    assert data["config"]["api_version"] == API_VERSION
    # the test as Azure received it: Locust, engines, criteria, the locustfile uploaded
    [test] = alt.tests.values()
    assert test["kind"] == "Locust"
    assert test["loadTestConfiguration"] == {"engineInstances": 3}
    assert test["environmentVariables"]["LOCUST_HOST"] == "https://emrsim.example.org"
    assert test["environmentVariables"]["LOCUST_RUN_TIME"] == "120s"
    criteria = list(test["passFailCriteria"]["passFailMetrics"].values())
    assert {(c["clientMetric"], c["aggregate"], c["condition"], c["value"]) for c in criteria} == {
        ("response_time_ms", "p95", ">", 2000.0),
        ("error", "percentage", ">", 1.0),
        ("response_time_ms", "p99", ">", 1000.0),
    }
    [(_test, name)] = alt.files
    assert name == "locustfile.py"
    assert b"class EmrsimUser(HttpUser)" in alt.files[(_test, name)]
    assert b"\nRATE = 33.33" in alt.files[(_test, name)]  # 100/s over 3 engines
    assert [m for m, _p in alt.requests][:2] == ["PATCH", "PUT"]
    assert 'testcase name="p95&lt;2s"' in junit.read_text() or "p95<2s" in junit.read_text()


def test_broken_budget_exits_3_and_names_it(cli, alt):
    alt.statistics["Total"]["pct2ResTime"] = 2500.0
    result = _cloud(cli, alt, "--budget", "p95<2s", "--budget", "rps>=10")
    assert result.exit_code == 3, result.stderr
    assert "budget p95<2s: FAIL (2.500s)" in result.stdout
    assert "budget rps>=10: pass" in result.stdout
    assert result.stderr.splitlines()[-2] == "Error: budget broken: p95<2s"


def test_budget_without_criterion_exits_2_before_any_request(cli, alt):
    result = _cloud(cli, alt, "--budget", "p95<2s", "--budget", "late_rate<1%")
    assert result.exit_code == 2
    assert "budget 'late_rate<1%' has no" in result.stderr
    assert alt.requests == []


def test_wrong_token_is_a_clear_error(cli, alt, monkeypatch):
    monkeypatch.setenv("EMROPS_AZURE_ACCESS_TOKEN", "not-the-token")
    result = _cloud(cli, alt)
    assert result.exit_code == 1
    assert "Azure Load Testing answered 401" in result.stderr


def test_budgets_map_to_criteria_and_back():
    for expr, metric, aggregate, condition, value in [
        ("p50<=300ms", "response_time_ms", "p50", ">", 300.0),
        ("p999<5s", "response_time_ms", "p99.9", ">", 5000.0),
        ("mean<1s", "response_time_ms", "avg", ">", 1000.0),
        ("error_rate<0.5%", "error", "percentage", ">", 0.5),
        ("rps>=45", "requests_per_sec", "avg", "<", 45.0),
    ]:
        budget = parse_budget(expr)
        criterion = criterion_for(budget)
        assert (criterion["clientMetric"], criterion["aggregate"]) == (metric, aggregate)
        assert (criterion["condition"], criterion["value"]) == (condition, pytest.approx(value))
        from emrops.loadtest.cloud import _criterion_id

        run = {
            "passFailCriteria": {
                "passFailMetrics": {
                    _criterion_id(budget): {**criterion, "actualValue": value, "result": "passed"}
                }
            }
        }
        [back] = budget_results([budget], run)
        assert back["passed"] is True
        assert back["actual"] == pytest.approx(budget.threshold)
    assert criterion_for(parse_budget("chat.p95<2s"))["requestName"] == "chat"
