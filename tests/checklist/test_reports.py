"""Reports parsed back (JUnit, Markdown, JSON) and the generated documents kept up to date."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml, Skipped

from emrops.checklist import export, loader
from tests.checklist.conftest import only_run, write

REPO = Path(__file__).resolve().parents[2]

MIXED = """\
schema: emrops.checklist/1
id: mixed
title: Mixed outcomes
version: 1
environments: [staging, production]
sections:
  - id: checks
    title: Checks
    items:
      - id: pass
        title: Passes
        instructions: ok
        check: {run: "echo fine"}
      - id: fail
        title: Fails
        instructions: not ok
        check: {run: "false"}
  - id: people
    title: People
    items:
      - id: skip
        title: Skipped by a person
        instructions: skip it
      - id: na
        title: Production only
        instructions: prod
        when: {env: production}
      - id: later
        title: Left for later
        instructions: later
"""


@pytest.fixture
def mixed_run(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.delenv("CI", raising=False)
    path = write(tmp_path / "mixed.yaml", MIXED)
    answers = "f\nbroken on purpose\ns\nnot today\nq\n"
    result = cli("checklist", "run", str(path), "--env", "staging", "--interactive", input=answers)
    assert result.exit_code == 3, result.stderr  # paused, but an item failed
    run = only_run(tmp_path)
    assert [i["status"] for i in run["items"]] == ["done", "failed", "skipped", "n/a", "pending"]
    return run


def test_junit_report_parses_back(cli, mixed_run: dict, tmp_path: Path) -> None:
    out = tmp_path / "reports" / "checklist.xml"
    result = cli("checklist", "report", mixed_run["run_id"], "--format", "junit", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    suites = list(JUnitXml.fromfile(str(out)))
    assert len(suites) == 1
    cases = {case.name: case for case in suites[0]}
    assert list(cases) == ["pass", "fail", "skip", "na", "later"]
    assert cases["pass"].classname == "mixed.checks" and cases["pass"].result == []
    assert "$ echo fine\nfine" in cases["pass"].system_out
    (failure,) = cases["fail"].result
    assert isinstance(failure, Failure) and failure.message == "broken on purpose"
    skips = {name: cases[name].result[0] for name in ("skip", "na", "later")}
    assert all(isinstance(r, Skipped) for r in skips.values())
    assert skips["skip"].message == "skipped: not today"
    assert skips["na"].message == "n/a: not for environment staging"
    assert skips["later"].message == "pending"
    root = ET.parse(out).getroot()
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "1", "3")


def test_run_state_audit_trail_and_reports_are_0600(cli, mixed_run: dict, tmp_path: Path) -> None:
    import stat

    from tests.checklist.conftest import runs_dir

    folder = runs_dir(tmp_path)
    for path in [*folder.glob("*.json"), *folder.glob("*.events.jsonl")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert list(folder.glob("*.events.jsonl"))
    for fmt in ("md", "json", "junit"):
        out = tmp_path / f"report.{fmt}"
        result = cli("checklist", "report", mixed_run["run_id"], "--format", fmt, "--out", str(out))
        assert result.exit_code == 0, result.stderr
        assert stat.S_IMODE(out.stat().st_mode) == 0o600, fmt


def test_markdown_report_parses_back(cli, mixed_run: dict) -> None:
    result = cli("checklist", "report", mixed_run["run_id"], "--format", "md")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert text.startswith(f"# Checklist run {mixed_run['run_id']}: Mixed outcomes\n")
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].split("`")[1]] = cells
    assert {k: v[1] for k, v in rows.items()} == {
        "pass": "done",
        "fail": "failed",
        "skip": "skipped",
        "na": "n/a",
        "later": "pending",
    }
    assert rows["fail"][5] == "broken on purpose"
    assert "- Status: **paused**" in text
    assert "### `fail`: `false`" in text


def test_json_report_is_the_run(cli, mixed_run: dict) -> None:
    result = cli("checklist", "report", mixed_run["run_id"], "--format", "json")
    assert json.loads(result.stdout) == mixed_run


def test_unknown_report_format(cli, mixed_run: dict) -> None:
    result = cli("checklist", "report", mixed_run["run_id"], "--format", "pdf")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: unknown report format 'pdf'"


def test_generated_docs_are_up_to_date() -> None:
    assert export.stale_docs(REPO / "docs") == [], "run `emrops checklist docs --dir docs`"


def test_docs_check_and_write(cli, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    result = cli("checklist", "docs", "--dir", str(folder), "--check")
    assert result.exit_code == 4
    assert "DEPLOYMENT_GUIDE.md, PRODUCTION_DEPLOYMENT_CHECKLIST.md" in result.stderr
    assert cli("checklist", "docs", "--dir", str(folder)).exit_code == 0
    assert cli("checklist", "docs", "--dir", str(folder), "--check").exit_code == 0
    (folder / "RECOVERY.md").write_text("hand edited\n")
    result = cli("checklist", "docs", "--dir", str(folder), "--check")
    assert result.exit_code == 4 and "RECOVERY.md" in result.stderr


def test_export_matches_docs_and_quick_folds_details(cli) -> None:
    full = cli("checklist", "export", "production-deployment", "--format", "md")
    assert full.exit_code == 0
    assert full.stdout == (REPO / "docs" / "PRODUCTION_DEPLOYMENT_CHECKLIST.md").read_text()
    quick = cli("checklist", "export", "production-deployment", "--format", "md", "--quick")
    assert quick.stdout == (REPO / "docs" / "DEPLOYMENT_QUICK_START.md").read_text()
    checklist = loader.load("production-deployment")
    for item in checklist.items:  # same items, same order, each folded
        assert f"**{item.title}**" in quick.stdout or f" {item.title}**" in quick.stdout
    assert quick.stdout.count("<details>") == len(checklist.items)
    assert "Evidence to record" in full.stdout and "Evidence to record" not in quick.stdout
    details = [item.details for item in checklist.items if item.details]
    assert details and all(d.splitlines()[0] in full.stdout for d in details)
    assert not any(d.splitlines()[0] in quick.stdout for d in details)
    assert len(quick.stdout) < len(full.stdout)
    exported = json.loads(cli("checklist", "export", "recovery-drill", "--format", "json").stdout)
    assert (
        exported["id"] == "recovery-drill"
        and exported["sha256"] == loader.load("recovery-drill").sha256
    )
