"""loadtest export --format locust: the locustfile run by real Locust against a sim server."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.conftest import Server, init_db


@pytest.fixture
def sqlite_db(sqlite_url: str) -> str:
    return init_db(sqlite_url)


TOKEN = "locust-export-token-7"
LOCUST = Path(sys.executable).with_name("locust")
needs_locust = pytest.mark.skipif(not LOCUST.exists(), reason="locust is a test extra")
MIX = {"chat": 0.5, "history": 0.3, "session": 0.1, "health": 0.1}


def _locust(
    locustfile: Path, url: str, tmp_path: Path, seconds: int = 6, processes: int | None = None
):
    env = {**os.environ, "EMROPS_SIM_TOKEN": TOKEN}
    prefix = tmp_path / "run"
    proc = subprocess.run(
        [str(LOCUST), "-f", str(locustfile), "--headless", "-u", "4", "-r", "4"]
        + ["-t", f"{seconds}s", "--host", url, "--csv", str(prefix), "--only-summary"]
        + (["--processes", str(processes)] if processes else []),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=90,
        check=False,
    )
    rows = list(csv.DictReader((tmp_path / "run_stats.csv").open()))
    return proc, {r["Name"]: r for r in rows}


@needs_locust
@pytest.mark.parametrize("processes", [None, 2], ids=["one-process", "two-processes"])
def test_exported_mix_runs_in_locust_with_budgets(
    cli, start_server, sqlite_db, tmp_path, processes
):
    server: Server = start_server("--db", sqlite_db, env={"EMROPS_SIM_TOKEN": TOKEN})
    locustfile = tmp_path / "locustfile.py"
    result = cli(
        "loadtest", "export", "--format", "locust", "--scenario", "mixed", "--rate", "60/s",
        "--budget", "error_rate<1%", "--budget", "p99<5s", "--out", str(locustfile), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    proc, stats = _locust(locustfile, server.url, tmp_path, processes=processes)
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts = {name: int(stats[name]["Request Count"]) for name in MIX}
    total = sum(counts.values())
    assert total > 60, counts
    for name, share in MIX.items():
        assert abs(counts[name] / total - share) <= 0.1 * share + 0.02, (name, counts)
    assert int(stats["Aggregated"]["Failure Count"]) == 0
    # the target rate is spread over the users: the run cannot exceed it by much
    assert float(stats["Aggregated"]["Requests/s"]) < 60 * 1.3


@needs_locust
def test_broken_budget_gives_exit_3(cli, start_server, sqlite_db, tmp_path):
    server: Server = start_server("--db", sqlite_db, env={"EMROPS_SIM_TOKEN": TOKEN})
    locustfile = tmp_path / "locustfile.py"
    result = cli(
        "loadtest", "export", "--scenario", "health", "--rate", "20/s",
        "--budget", "rps>=100000", "--budget", "health.p95<10s", "--out", str(locustfile),
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    proc, stats = _locust(locustfile, server.url, tmp_path, seconds=3)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "budget broken: rps>=100000 (actual " in proc.stderr
    assert "health.p95" not in proc.stderr.split("budget broken:")[1]
    assert int(stats["health"]["Request Count"]) > 10


def test_what_locust_cannot_do_is_refused(cli, tmp_path):
    out = tmp_path / "lf.py"
    ws = cli("loadtest", "export", "--scenario", "ws-chat", "--out", str(out))
    assert ws.exit_code == 2
    assert "scenario ws-chat cannot be exported to Locust" in ws.stderr
    late = cli("loadtest", "export", "--budget", "late_rate<1%", "--out", str(out))
    assert late.exit_code == 2
    assert "budget 'late_rate<1%' has no Locust counterpart" in late.stderr
    fmt = cli("loadtest", "export", "--format", "k6", "--out", str(out))
    assert fmt.exit_code == 2 and "unknown --format 'k6'" in fmt.stderr
    assert not out.exists()
