"""`loadtest run` against real sim servers: rate, budgets, outputs, scenarios, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

from junitparser import Failure, JUnitXml

from emrops.loadtest.result import SCHEMA
from emrops.stats.histogram import LatencyHistogram
from tests.loadtest.conftest import metric
from tests.sim.conftest import Server

POSTS = 'emrsim_http_requests_total{method="POST",route="/api/sessions/{session_id}/messages"'


def test_open_model_holds_the_rate_and_budgets_pass(cli, sim_sqlite: Server, tmp_path: Path):
    before = metric(sim_sqlite.url, POSTS)
    result = cli(
        "loadtest",
        "run",
        "--url",
        sim_sqlite.url,
        "--scenario",
        "chat",
        "--rate",
        "40/s",
        "--duration",
        "3s",
        "--budget",
        "p95<2s",
        "--budget",
        "error_rate<1%",
        "--out",
        "run.json",
        "--junit",
        "run.xml",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)  # --json: nothing but JSON on stdout
    assert data == json.loads((tmp_path / "run.json").read_text())
    assert data["schema"] == SCHEMA and data["passed"] is True
    s = data["summary"]
    assert s["scheduled"] == 120 and s["sent"] == 120 and s["completed"] == 120
    assert s["errors"] == 0 and s["dropped"] == 0
    assert abs(s["throughput"] - 40) / 40 < 0.05
    # the server really answered them: setup posts nothing in the chat scenario
    assert metric(sim_sqlite.url, POSTS) - before == 120
    hist = LatencyHistogram.decode(s["latency"]["histogram"])
    assert hist.count == 120
    assert s["latency"]["p95_ms"] == hist.percentile_us(95) / 1000
    assert [b["passed"] for b in data["budgets"]] == [True, True]
    suite = next(iter(JUnitXml.fromfile(str(tmp_path / "run.xml"))))
    cases = list(suite)
    # on a busy machine the generator may be starved and flag itself: a skipped testcase
    flagged = not data["generator"]["reliable"]
    assert [c.name for c in cases] == ["p95<2s", "error_rate<1%"] + ["generator"] * flagged
    assert cases[0].is_passed and cases[1].is_passed


def test_broken_budget_exits_3_and_names_it(cli, sim_sqlite: Server, tmp_path: Path) -> None:
    (tmp_path / "budgets.toml").write_text(
        '[budgets]\nerror_rate = "<1%"\n\n[budgets.health]\np50 = "<0.1ms"\n'
    )
    result = cli(
        "loadtest",
        "run",
        "--url",
        sim_sqlite.url,
        "--scenario",
        "health",
        "--rate",
        "20/s",
        "--duration",
        "1s",
        "--budgets",
        "budgets.toml",
        "--junit",
        "run.xml",
    )
    assert result.exit_code == 3, result.stderr
    assert "Error: budget broken: health.p50<0.1ms (" in result.stderr
    assert "error_rate" not in result.stderr.splitlines()[-2]
    assert "budget health.p50<0.1ms: FAIL" in result.stdout
    cases = list(next(iter(JUnitXml.fromfile(str(tmp_path / "run.xml")))))
    # (a busy machine may add a skipped "generator" case: skipped, not failed)
    failed = {c.name: c for c in cases if any(isinstance(r, Failure) for r in c.result)}
    assert list(failed) == ["health.p50<0.1ms"]
    (failure,) = failed["health.p50<0.1ms"].result
    assert isinstance(failure, Failure) and "health.p50 = " in failure.message


def test_stall_shows_in_p95_from_intended_start(cli, stall_server) -> None:
    # request 40 freezes the server for 0.6 s; at 50/s about 30 requests are scheduled meanwhile
    url = stall_server(40, 0.6)
    result = cli(
        "loadtest",
        "run",
        "--url",
        url,
        "--scenario",
        "health",
        "--rate",
        "50/s",
        "--duration",
        "3s",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    s = json.loads(result.stdout)["summary"]
    assert s["completed"] == 150
    assert s["latency"]["p95_ms"] > 250  # the ~30 requests waiting in the stall
    assert s["latency"]["max_ms"] > 550
    # a closed-model client hides the same stall: only one request sees it (coordinated omission)
    url = stall_server(40, 0.6)
    closed = cli(
        "loadtest",
        "run",
        "--url",
        url,
        "--scenario",
        "health",
        "--closed",
        "1",
        "--duration",
        "2s",
        "--json",
    )
    c = json.loads(closed.stdout)["summary"]
    assert c["latency"]["max_ms"] > 550 and c["latency"]["p95_ms"] < 100


def test_ws_chat_records_reply_latency(cli, sim_sqlite: Server) -> None:
    result = cli(
        "loadtest",
        "run",
        "--url",
        sim_sqlite.url,
        "--scenario",
        "ws-chat",
        "--rate",
        "20/s",
        "--duration",
        "2s",
        "--budget",
        "ws-chat.p95<2s",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    step = data["summary"]["steps"]["ws-chat"]
    assert step["count"] == 40 and step["errors"] == 0
    assert 0 < step["latency"]["p50_ms"] < 2000
    assert metric(sim_sqlite.url, "emrsim_websocket_frames_total") > 0


def test_mixed_with_two_processes_and_repeats(cli, sim_sqlite: Server) -> None:
    result = cli(
        "loadtest",
        "run",
        "--url",
        sim_sqlite.url,
        "--scenario",
        "mixed",
        "--rate",
        "40/s",
        "--duration",
        "1s",
        "--repeat",
        "2",
        "--warmup",
        "0.5s",
        "--processes",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    s = data["summary"]
    assert s["scheduled"] == 80 and s["completed"] == 80 and s["errors"] == 0
    assert [r["completed"] for r in data["repeats"]] == [40, 40]
    assert set(s["steps"]) == {"chat", "history", "session", "health"}
    assert s["steps"]["chat"]["count"] == 40  # 5 of every 10
    assert len(data["generator"]["cpu"]) == 2


def test_two_instances_on_one_postgres_share_the_traffic(cli, start_server, pg_url) -> None:
    from tests.sim.conftest import init_db

    db = init_db(pg_url)
    a, b = start_server("--db", db, wait=False), start_server("--db", db, wait=False)
    a.wait_healthy()
    b.wait_healthy()
    result = cli(
        "loadtest",
        "run",
        "--url",
        a.url,
        "--url",
        b.url,
        "--scenario",
        "chat",
        "--rate",
        "30/s",
        "--duration",
        "2s",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    targets = json.loads(result.stdout)["summary"]["targets"]
    assert [t["requests"] for t in targets] == [30, 30]
    assert metric(a.url, POSTS) == 30 and metric(b.url, POSTS) == 30


def test_compare_detects_a_constructed_regression(cli, sim_sqlite: Server, tmp_path: Path):
    result = cli(
        "loadtest",
        "run",
        "--url",
        sim_sqlite.url,
        "--scenario",
        "health",
        "--rate",
        "30/s",
        "--duration",
        "1s",
        "--repeat",
        "3",
        "--out",
        "base.json",
    )
    assert result.exit_code == 0, result.stderr
    same = cli("loadtest", "compare", "base.json", "base.json", "--json")
    assert same.exit_code == 0, same.stderr
    assert json.loads(same.stdout)["regressed"] is False
    # the same run, every latency three times slower plus 200 ms
    doc = json.loads((tmp_path / "base.json").read_text())
    for block in [doc["summary"], *doc["repeats"]]:
        old = LatencyHistogram.decode(block["latency"]["histogram"])
        slow = LatencyHistogram()
        for pct in range(1, 101):
            slow.record_us(old.percentile_us(pct) * 3 + 200_000)
        block["latency"]["histogram"] = slow.encode()
        for step in block["steps"].values():
            step["latency"]["histogram"] = slow.encode()
    (tmp_path / "slow.json").write_text(json.dumps(doc))
    worse = cli("loadtest", "compare", "base.json", "slow.json", "--max-regression", "10%")
    assert worse.exit_code == 3, worse.stderr
    # the table title goes to stderr first when stdout is not a terminal
    error = next(
        line for line in worse.stderr.splitlines() if line.startswith("Error: regression beyond")
    )
    assert error.startswith("Error: regression beyond 10%: ") and "p95" in error, worse.stderr
    better = cli("loadtest", "compare", "slow.json", "base.json", "--json")
    assert better.exit_code == 0
    regressed = json.loads(cli("loadtest", "compare", "base.json", "slow.json", "--json").stdout)
    assert "p95" in regressed["regressions"], regressed
    verdicts = {m["name"]: m["verdict"] for m in json.loads(better.stdout)["metrics"]}
    assert verdicts["p95"] in ("improved", "unchanged")  # unchanged if within the noise


def test_compare_rejects_other_files(cli, tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"schema": "emrops.bench.result/1"}')
    result = cli("loadtest", "compare", "x.json", "x.json")
    assert result.exit_code == 2
    assert "is not a loadtest result" in result.stderr
    assert cli("loadtest", "compare", "x.json", "nope.json").exit_code == 2


def test_bad_input(cli, sim_sqlite: Server, tmp_path: Path) -> None:
    base = ["loadtest", "run", "--duration", "1s"]
    cases = [
        (
            ["--url", sim_sqlite.url, "--rate", "0/s"],
            2,
            "Error: invalid rate '0/s': must be above zero",
        ),
        (["--url", sim_sqlite.url, "--rate", "fast"], 2, "Error: invalid rate 'fast'"),
        (
            ["--url", sim_sqlite.url, "--rate", "5/s", "--budget", "p95<<2s"],
            2,
            "invalid latency in budget 'p95<<2s'",
        ),
        (
            ["--url", sim_sqlite.url, "--rate", "5/s", "--budget", "p59<2s"],
            2,
            "Error: unknown metric 'p59' in budget 'p59<2s'",
        ),
        (
            ["--url", sim_sqlite.url, "--rate", "5/s", "--budget", "history.p95<2s"],
            2,
            "the chat scenario has no history step",
        ),
        (["--url", sim_sqlite.url, "--rate", "5/s", "--scenario", "login"], 2, "unknown scenario"),
        (["--url", sim_sqlite.url], 2, "give --rate (open model) or --closed N"),
        (["--url", "localhost:8000", "--rate", "5/s"], 2, "invalid --url"),
        (
            ["--url", sim_sqlite.url, "--rate", "5/s", "--budgets", "missing.toml"],
            2,
            "does not exist",
        ),
    ]
    for args, code, message in cases:
        result = cli(*base, *args)
        assert result.exit_code == code, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert result.stdout == ""


def test_unreachable_url_is_a_clear_error(cli) -> None:
    from tests.conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = cli("loadtest", "run", "--url", url, "--rate", "5/s", "--duration", "1s")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: load test not started: cannot connect to {url}")
    assert "Try: check that the sim server runs" in result.stderr


def test_generator_that_falls_behind_marks_the_result_unreliable(cli, sim_sqlite: Server):
    # --late-after 0ms: every request sent after its intended instant counts as late, as if
    # the generator could not keep up
    result = cli(
        "loadtest",
        "run",
        "--url",
        sim_sqlite.url,
        "--scenario",
        "health",
        "--rate",
        "20/s",
        "--duration",
        "1s",
        "--late-after",
        "0ms",
        "--budget",
        # <=: on a loaded machine every request can be late, and that must not fail the test
        "late_rate<=100%",
        "--out",
        "run.json",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(Path("run.json").read_text())
    generator = data["generator"]
    assert generator["reliable"] is False
    assert data["summary"]["late_rate"] > 0.01
    assert "the generator fell behind" in generator["unreliable_reasons"][0]
    assert "Warning: result unreliable: " in result.stderr
    assert generator["schedule_lag"]["count"] == 20


def test_progress_every_5s_when_not_a_terminal(cli, sim_sqlite: Server) -> None:
    result = cli(
        "--log-format", "json", "loadtest", "run", "--url", sim_sqlite.url,
        "--scenario", "chat", "--rate", "10/s", "--duration", "6s",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    progress = [e for e in events if e.get("event") == "progress"]
    assert 1 <= len(progress) <= 2  # every 5 s, not every 0.5 s
    first = progress[0]
    assert first["elapsed_s"] >= 5 and first["rps"] > 0 and first["errors"] == 0
    assert first["p95_ms"] > 0 and "req/s" in first["message"]


def test_timeout_bounds_the_run_against_a_server_that_stops_answering(cli, stall_server) -> None:
    # the preflight /health is answered, then request 2 freezes the server for a minute: every
    # request times out, and the run still ends at warm-up + duration + --timeout
    url = stall_server(2, 60)
    started = time.monotonic()
    result = cli(
        "loadtest", "run", "--url", url, "--scenario", "health", "--rate", "5/s",
        "--duration", "2s", "--timeout", "1s", "--budget", "error_rate<1%", "--json",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert elapsed < 2 + 1 + 1.5, elapsed
    assert result.exit_code == 3, result.stderr
    summary = json.loads(result.stdout)["summary"]
    assert summary["error_kinds"] == {"timeout": summary["scheduled"]} and summary["ok"] == 0
    assert "Error: budget broken: error_rate<1%" in result.stderr
