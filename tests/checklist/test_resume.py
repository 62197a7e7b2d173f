"""Resuming runs: after the process is killed in a real terminal, and after the file changed."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import filelock
import pexpect
import pytest

from tests.checklist.conftest import by_id, only_run, runs_dir, write

THREE = """\
schema: emrops.checklist/1
id: three
title: Three steps
version: 1
sections:
  - id: s
    title: Only section
    items:
      - id: first
        title: First manual step
        instructions: Open the **runbook** page.
        evidence:
          - {id: url, prompt: Runbook URL, kind: url}
      - id: second
        title: Second manual step
        instructions: Press the button.
      - id: third
        title: Third step is automatic
        instructions: Runs a check.
        check: {run: "echo all-good"}
"""


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def _spawn(args: list[str], cwd: Path) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_") and k != "CI"}
    env.update({"TERM": "xterm", "COLUMNS": "120", "LINES": "40"})
    return pexpect.spawn(
        sys.executable,
        ["-m", "emrops", *args],
        cwd=str(cwd),
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )


def test_real_terminal_then_kill_between_items_then_resume(cli, tmp_path: Path) -> None:
    path = write(tmp_path / "three.yaml", THREE)
    child = _spawn(["checklist", "run", str(path)], tmp_path)  # a TTY: interactive by default
    try:
        child.expect_exact("[1/3] First manual step")
        # Markdown rendered for the terminal: bold as an ANSI code, the ** markers gone
        child.expect(r"Open the \x1b\[1m\S*runbook\x1b\[0m page\.")
        child.expect_exact("(done): ")
        child.sendline("d")
        child.expect_exact("Runbook URL: ")
        child.sendline("not a url")
        child.expect_exact("expected a URL starting with http:// or https://")
        child.expect_exact("Runbook URL: ")
        child.sendline("https://wiki.example/runbook")
        child.expect_exact("[2/3] Second manual step")
        child.expect_exact("(done): ")
        # the first item is on disk before the second is answered
        run = only_run(tmp_path)
        assert by_id(run)["first"]["status"] == "done"
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while child.isalive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not child.isalive()
    finally:
        child.close(force=True)
    run = only_run(tmp_path)
    assert run["status"] == "in-progress"  # killed: nobody had the chance to say otherwise
    assert by_id(run)["first"]["evidence"] == {"url": "https://wiki.example/runbook"}
    assert by_id(run)["second"]["status"] == "pending"

    result = cli(
        "checklist", "run", str(path), "--resume", run["run_id"], "--interactive", input="d\n"
    )
    assert result.exit_code == 0, result.stderr
    assert "First manual step" not in result.stderr  # not asked again
    assert "[2/3] Second manual step" in result.stderr
    resumed = only_run(tmp_path)
    assert resumed["run_id"] == run["run_id"] and resumed["status"] == "complete"
    assert [item["status"] for item in resumed["items"]] == ["done", "done", "done"]
    assert len(resumed["sessions"]) == 2
    assert by_id(resumed)["third"]["check"]["output"] == "all-good\n"


def test_ctrl_c_in_a_terminal_saves_and_exits_130(tmp_path: Path) -> None:
    path = write(tmp_path / "three.yaml", THREE)
    child = _spawn(["checklist", "run", str(path), "--interactive"], tmp_path)
    try:
        child.expect_exact("(done): ")
        child.sendintr()
        child.expect_exact("Error: interrupted: checklist run")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    assert only_run(tmp_path)["status"] == "interrupted"


def _ci_run(cli, path: Path) -> dict:
    result = cli("checklist", "run", str(path), "--non-interactive")
    assert result.exit_code == 0, result.stderr
    return only_run(path.parent)


def test_resume_refused_when_checklist_changed(cli, tmp_path: Path) -> None:
    path = write(tmp_path / "three.yaml", THREE)
    run = _ci_run(cli, path)
    assert by_id(run)["third"]["status"] == "done"
    path.write_text(THREE.replace("Press the button.", "Press the red button."))
    result = cli(
        "checklist",
        "run",
        str(path),
        "--resume",
        run["run_id"],
        "--interactive",
        input="d\nhttps://x.example\nd\n",
    )
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: checklist three changed since run {run['run_id']} started")
    assert "--force" in result.stderr
    assert only_run(tmp_path)["sha256"] == run["sha256"]  # nothing touched

    result = cli(
        "checklist",
        "run",
        str(path),
        "--resume",
        run["run_id"],
        "--interactive",
        "--force",
        input="d\nhttps://x.example\nd\n",
    )
    assert result.exit_code == 0, result.stderr
    after = only_run(tmp_path)
    assert after["status"] == "complete" and after["sha256"] != run["sha256"]
    assert "Third step is automatic" not in result.stderr  # done items are kept


def test_resume_guards(cli, tmp_path: Path, basic: Path) -> None:
    path = write(tmp_path / "three.yaml", THREE)
    run = _ci_run(cli, path)
    result = cli("checklist", "run", str(basic), "--resume", run["run_id"])
    assert result.exit_code == 2
    assert f"run {run['run_id']} belongs to checklist three, not basic" in result.stderr
    result = cli("checklist", "run", str(path), "--resume", "20990101T000000Z-000000")
    assert result.exit_code == 2
    assert "no checklist run '20990101T000000Z-000000'" in result.stderr
    lock = filelock.FileLock(str(runs_dir(tmp_path) / f"{run['run_id']}.lock"))
    with lock:
        result = cli("checklist", "run", str(path), "--resume", run["run_id"])
    assert result.exit_code == 75
    assert "is being driven by another process" in result.stderr


def test_status_lists_and_shows_runs(cli, tmp_path: Path) -> None:
    path = write(tmp_path / "three.yaml", THREE)
    run = _ci_run(cli, path)
    listed = cli("checklist", "status", "--json")
    assert listed.exit_code == 0
    rows = json.loads(listed.stdout)
    assert [r["run_id"] for r in rows] == [run["run_id"]]
    assert rows[0]["counts"]["pending"] == 2 and rows[0]["status"] == "incomplete"
    one = cli("checklist", "status", run["run_id"], "--json")
    assert json.loads(one.stdout)["items"][2]["status"] == "done"
    table = cli("checklist", "status", run["run_id"])
    assert "third" in table.stdout and "pending" in table.stdout


def test_ctrl_c_during_a_check_kills_the_check(tmp_path: Path) -> None:
    pidfile = tmp_path / "check.pid"
    path = write(
        tmp_path / "hang.yaml",
        f"""\
        schema: emrops.checklist/1
        id: hang
        title: Hang
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: hang
                title: Hangs
                instructions: hangs
                check: {{run: "sh -c 'echo $$ > {pidfile}; exec sleep 60'", timeout: 90s}}
        """,
    )
    child = _spawn(["checklist", "run", str(path), "--interactive"], tmp_path)
    try:
        child.expect_exact("Running check:")
        deadline = time.monotonic() + 10
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        check_pid = int(pidfile.read_text())
        child.sendintr()
        child.expect_exact("Error: interrupted: checklist run")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130
    deadline = time.monotonic() + 5
    while _alive(check_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(check_pid), "the check outlived the checklist run"
    assert by_id(only_run(tmp_path))["hang"]["status"] == "pending"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")  # a zombie is dead
