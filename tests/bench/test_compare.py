"""`benchmark compare` on synthetic result files: regression, improvement, noise, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emrops.bench.compare import compare_results, metrics
from emrops.stats.compare import Verdict
from tests.bench.conftest import synthetic_doc


def _write(tmp_path: Path, name: str, doc: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return str(path)


BASE = [(1000.0, 2000), (1010.0, 2020), (990.0, 1980)]


def test_regression_exits_3_and_names_the_metric(cli, tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    slow = _write(
        tmp_path, "new.json", synthetic_doc([(700.0, 3000), (705.0, 3010), (695.0, 2990)])
    )
    r = cli("benchmark", "compare", base, slow, "--max-regression", "10%")
    assert r.exit_code == 3, r.stderr
    assert "Error: " in r.stderr and "regressed beyond 10%" in r.stderr
    assert "sqlite/c4/all/ops_per_s" in r.stderr
    assert "regressed" in r.stdout


def test_regression_json_lists_each_metric(cli, tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    slow = _write(tmp_path, "new.json", synthetic_doc([(1000.0, 3000), (1000.0, 3000)]))
    r = cli("benchmark", "compare", base, slow, "--json", "--out", str(tmp_path / "cmp.json"))
    assert r.exit_code == 3
    data = json.loads(r.stdout)  # nothing but JSON on stdout
    verdicts = {m["name"]: m["verdict"] for m in data["metrics"]}
    assert verdicts["sqlite/c4/all/ops_per_s"] == "unchanged"
    assert verdicts["sqlite/c4/all/p95"] == "regressed"
    assert verdicts["sqlite/c4/chat.exchange/p50"] == "regressed"
    assert json.loads((tmp_path / "cmp.json").read_text())["regressed"] is True


def test_improvement_exits_0(cli, tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    fast = _write(tmp_path, "new.json", synthetic_doc([(1500.0, 1000), (1490.0, 1010)]))
    r = cli("benchmark", "compare", base, fast, "--json")
    assert r.exit_code == 0, r.stderr
    verdicts = {m["name"]: m["verdict"] for m in json.loads(r.stdout)["metrics"]}
    assert verdicts["sqlite/c4/all/ops_per_s"] == "improved"
    assert verdicts["sqlite/c4/all/p99"] == "improved"


def test_worse_within_run_to_run_spread_is_noise_not_a_failure(cli, tmp_path: Path) -> None:
    noisy = [(600.0, 2000), (1000.0, 2000), (1400.0, 2000)]  # 80 % spread between repeats
    base = _write(tmp_path, "base.json", synthetic_doc(noisy))
    new = _write(tmp_path, "new.json", synthetic_doc([(820.0, 2000), (800.0, 2000)]))
    r = cli("benchmark", "compare", base, new, "--json", "--max-regression", "10%")
    assert r.exit_code == 0, r.stderr
    verdicts = {m["name"]: m["verdict"] for m in json.loads(r.stdout)["metrics"]}
    assert verdicts["sqlite/c4/all/ops_per_s"] == "noise"
    # the same drop with quiet repeats is a regression
    quiet = _write(tmp_path, "quiet.json", synthetic_doc(BASE))
    assert cli("benchmark", "compare", quiet, new).exit_code == 3


def test_small_change_under_threshold_exits_0(cli, tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    new = _write(tmp_path, "new.json", synthetic_doc([(950.0, 2100), (955.0, 2090)]))
    r = cli("benchmark", "compare", base, new, "--max-regression", "10%")
    assert r.exit_code == 0, r.stderr
    assert "unchanged" in r.stdout


def test_latency_metrics_come_from_merged_histograms() -> None:
    doc = synthetic_doc([(1000.0, 1000), (1000.0, 100_000)])
    series = metrics(doc)["sqlite/c4/all/p95"]
    # per-repeat p95s are 1 ms and 100 ms; the merged p95 is 100 ms, not their 50 ms average
    assert series.central is not None and series.central > 99_000
    assert sorted(series.values)[0] < 1100


def test_different_workloads_are_refused(cli, tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    other = _write(tmp_path, "new.json", synthetic_doc(BASE, workload="write"))
    r = cli("benchmark", "compare", base, other)
    assert r.exit_code == 2
    assert "Error: the files measure different workloads: chat (baseline) and write" in r.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON (line 1"),
        ('{"schema": "something.else"}', "is not a benchmark result (schema is 'something.else')"),
        (
            '{"schema": "emrops.benchmark.result", "schema_version": 99}',
            "has schema_version 99; this emrops reads version 1",
        ),
        (
            '{"schema": "emrops.benchmark.result", "schema_version": 1}',
            "does not match the result schema at (top level): 'created_at' is a required",
        ),
    ],
)
def test_bad_result_files_exit_2(cli, tmp_path: Path, content: str, message: str) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    r = cli("benchmark", "compare", base, str(bad))
    assert r.exit_code == 2
    assert message in r.stderr and r.stderr.startswith("Error: ")


def test_missing_file_and_bad_threshold(cli, tmp_path: Path) -> None:
    base = _write(tmp_path, "base.json", synthetic_doc(BASE))
    r = cli("benchmark", "compare", base, str(tmp_path / "nope.json"))
    assert r.exit_code == 2 and "Error: result file not found:" in r.stderr
    r = cli("benchmark", "compare", base, base, "--max-regression", "ten")
    assert r.exit_code == 2 and "Error: invalid percentage 'ten'" in r.stderr


def test_compare_results_api_identical_is_clean() -> None:
    doc = synthetic_doc(BASE)
    comparison = compare_results(doc, doc, 0.05)
    assert not comparison.regressed
    assert all(d.verdict is Verdict.UNCHANGED for d in comparison.deltas)
