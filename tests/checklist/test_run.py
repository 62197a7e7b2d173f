"""`emrops checklist run` through CliRunner: scripted answers, CI mode, timeouts, exit codes."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.checklist.conftest import by_id, only_run, runs_dir, write


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def test_interactive_confirm_evidence_skip(cli, basic: Path, tmp_path: Path) -> None:
    answers = "d\nbad-ticket\nOPS-42\n\ns\nnot relevant here\n"
    result = cli("checklist", "run", str(basic), "--interactive", "--env", "staging", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "does not match the expected format" in result.stderr  # bad evidence asked again
    run = only_run(tmp_path)
    assert run["status"] == "complete" and run["env"] == "staging"
    items = by_id(run)
    assert items["auto-ok"]["status"] == "done" and items["auto-ok"]["method"] == "auto"
    assert items["auto-ok"]["check"]["exit_code"] == 0
    assert items["manual-ticket"]["status"] == "done"
    assert items["manual-ticket"]["method"] == "manual"
    assert items["manual-ticket"]["evidence"] == {"ticket": "OPS-42"}  # optional note left empty
    assert items["prod-only"]["status"] == "n/a"
    assert items["manual-skip"] == {
        **items["manual-skip"],
        "status": "skipped",
        "reason": "not relevant here",
    }
    echo = items["auto-echo"]["check"]
    assert echo["output"].strip() == "postgresql://app:***@db.example/emrsim"
    assert "hunter22secret" not in json.dumps(run)
    assert items["manual-ticket"]["by"]["host"] == socket.gethostname()
    assert items["manual-ticket"]["by"]["user"]
    assert items["manual-ticket"]["at"].endswith("Z")
    assert run["counts"] == {"pending": 0, "done": 3, "failed": 0, "skipped": 1, "n/a": 1}
    events = (runs_dir(tmp_path) / f"{run['run_id']}.events.jsonl").read_text().splitlines()
    kinds = [json.loads(line)["event"] for line in events]
    assert kinds[0] == "session-start" and kinds[-1] == "finished"
    assert kinds.count("item") == 4  # every change is in the audit trail (n/a set at start)
    assert "hunter22secret" not in "".join(events)


def test_interactive_failed_check_retry_then_fail(cli, tmp_path: Path) -> None:
    path = write(
        tmp_path / "failing.yaml",
        """\
        schema: emrops.checklist/1
        id: failing
        title: Failing
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: broken
                title: Broken check
                instructions: Always fails.
                check: {run: "sh -c 'echo boom; exit 7'"}
        """,
    )
    result = cli("checklist", "run", str(path), "--interactive", input="r\nf\nstill broken\n")
    assert result.exit_code == 3, result.stderr
    assert "Error: 1 item(s) failed: broken" in result.stderr
    assert "boom" in result.stderr  # the check output is shown to the person
    item = by_id(only_run(tmp_path))["broken"]
    assert item["status"] == "failed" and item["reason"] == "still broken"
    assert item["attempts"] == 2 and item["check"]["exit_code"] == 7
    assert item["check"]["expected"] == [0]


def test_quit_pauses_and_tells_how_to_resume(cli, basic: Path, tmp_path: Path) -> None:
    result = cli("checklist", "run", str(basic), "--interactive", input="q\n")
    assert result.exit_code == 0, result.stderr
    run = only_run(tmp_path)
    assert run["status"] == "paused"
    assert f"--resume {run['run_id']}" in result.stderr
    assert by_id(run)["auto-ok"]["status"] == "done"
    assert by_id(run)["manual-ticket"]["status"] == "pending"


def test_end_of_input_saves_and_exits_130(cli, basic: Path, tmp_path: Path) -> None:
    result = cli("checklist", "run", str(basic), "--interactive", input="d\n")
    assert result.exit_code == 130
    assert "Error: input ended: checklist run" in result.stderr
    assert only_run(tmp_path)["status"] == "interrupted"


def test_ci_runs_only_automatic_checks(cli, basic: Path, tmp_path: Path) -> None:
    result = cli("checklist", "run", str(basic), "--json", env={"CI": "true"})
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["status"] == "incomplete"
    assert summary["pending"] == ["manual-ticket", "manual-skip"]
    assert summary["failed"] == []
    assert "pending: manual-ticket: Manual item with evidence" in result.stderr
    items = by_id(only_run(tmp_path))
    assert items["auto-ok"]["status"] == "done" and items["auto-echo"]["status"] == "done"
    assert only_run(tmp_path)["mode"] == "non-interactive"


def test_without_a_tty_the_default_is_non_interactive(cli, basic: Path, tmp_path: Path) -> None:
    result = cli("checklist", "run", str(basic))  # CliRunner's stdin is not a terminal
    assert result.exit_code == 0, result.stderr
    assert only_run(tmp_path)["mode"] == "non-interactive"


def test_explicit_interactive_wins_over_ci(cli, basic: Path, tmp_path: Path) -> None:
    result = cli(
        "checklist", "run", str(basic), "--interactive", env={"CI": "true"}, input="d\nOPS-1\n\nd\n"
    )
    assert result.exit_code == 0, result.stderr
    assert only_run(tmp_path)["mode"] == "interactive"
    assert by_id(only_run(tmp_path))["manual-skip"]["status"] == "done"


def test_require_complete_fails_on_pending(cli, basic: Path) -> None:
    result = cli("checklist", "run", str(basic), "--non-interactive", "--require-complete")
    assert result.exit_code == 3
    assert "Error: 2 item(s) still pending: manual-ticket, manual-skip" in result.stderr


def test_ci_failing_check_exits_3(cli, tmp_path: Path) -> None:
    path = write(
        tmp_path / "ci.yaml",
        """\
        schema: emrops.checklist/1
        id: ci
        title: CI
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: passes
                title: Passes
                instructions: ok
                check: {run: "true"}
              - id: fails
                title: Fails
                instructions: not ok
                check: {run: "false"}
              - id: exit-four
                title: Exit 4 is fine here
                instructions: ok
                check: {run: "sh -c 'exit 4'", expect_exit: [0, 4]}
        """,
    )
    result = cli("checklist", "run", str(path), "--non-interactive", "--json")
    assert result.exit_code == 3
    assert "Error: 1 item(s) failed: fails" in result.stderr
    summary = json.loads(result.stdout)
    assert summary["failed"] == ["fails"]
    assert summary["counts"]["done"] == 2


def test_check_timeout(cli, tmp_path: Path) -> None:
    path = write(
        tmp_path / "slow.yaml",
        """\
        schema: emrops.checklist/1
        id: slow
        title: Slow
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: sleeper
                title: Sleeps too long
                instructions: sleeps
                check: {run: "sleep 5", timeout: 1s}
        """,
    )
    result = cli("checklist", "run", str(path), "--non-interactive")
    assert result.exit_code == 3
    item = by_id(only_run(tmp_path))["sleeper"]
    assert item["status"] == "failed"
    assert item["check"]["timed_out"] is True and item["check"]["exit_code"] is None
    assert 0.9 <= item["check"]["duration_s"] < 4
    assert item["reason"] == "check failed: timed out after 1s"


def test_check_timeout_bounds_the_run_and_kills_what_the_check_started(cli, tmp_path: Path) -> None:
    # a background child holds the output pipe open: killing only the shell would leave the
    # run waiting for EOF until the child's own 30 s ran out
    pidfile = tmp_path / "child.pid"
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
              - id: hanger
                title: Leaves a child behind
                instructions: hangs
                check: {{run: "sh -c 'sleep 30 & echo $! > {pidfile}; sleep 30'", timeout: 1s}}
        """,
    )
    started = time.monotonic()
    result = cli("checklist", "run", str(path), "--non-interactive")
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.stderr
    assert elapsed < 4, elapsed
    assert by_id(only_run(tmp_path))["hanger"]["reason"] == "check failed: timed out after 1s"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2  # killed with its process group, reaped by init
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the check's background child outlived its timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state != "Z"


def test_emrops_commands_run_as_real_checks(cli, tmp_path: Path) -> None:
    db = tmp_path / "drill.db"
    path = write(
        tmp_path / "real.yaml",
        f"""\
        schema: emrops.checklist/1
        id: real
        title: Real emrops checks
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: config
                title: Config loads
                instructions: config show
                check: {{run: "emrops config show --json", timeout: 60s}}
              - id: init-db
                title: Database initialised
                instructions: init-db
                check: {{run: "emrops sim init-db --db sqlite:///{db} --json", timeout: 60s}}
        """,
    )
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "emrops.toml").write_text('state_dir = "state"\n')
    result = cli("--config", "conf/emrops.toml", "checklist", "run", str(path), "--non-interactive")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / ".emrops").exists()  # the run lives in the configured state_dir
    items = by_id(only_run(tmp_path, conf / "state"))
    # the check ran with the same config file as the checklist run
    assert f'"config_file": "{conf / "emrops.toml"}"' in items["config"]["check"]["output"]
    assert items["init-db"]["status"] == "done"
    assert db.is_file() and db.stat().st_size > 0


def test_env_substitution_and_unset_variable(cli, tmp_path: Path, monkeypatch) -> None:
    path = write(
        tmp_path / "vars.yaml",
        """\
        schema: emrops.checklist/1
        id: vars
        title: Vars
        version: 1
        environments: [staging]
        sections:
          - id: s
            title: S
            items:
              - id: echo
                title: Echo
                instructions: echo
                check: {run: "sh -c 'test \\"$0\\" = \\"staging|a b\\"' {env}|${TARGET}"}
        """,
    )
    result = cli("checklist", "run", str(path), "--env", "staging", "--non-interactive")
    assert result.exit_code == 2
    assert "uses ${TARGET}, which is not set" in result.stderr
    monkeypatch.setenv("TARGET", "a b")
    result = cli("checklist", "run", str(path), "--env", "staging", "--non-interactive")
    assert result.exit_code == 0, result.stderr


def test_unknown_env_and_missing_env(cli, basic: Path) -> None:
    result = cli("checklist", "run", str(basic), "--env", "qa")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: unknown environment 'qa' for checklist basic"


def test_long_output_is_truncated_to_its_tail(cli, tmp_path: Path) -> None:
    import sys

    path = write(
        tmp_path / "long.yaml",
        f"""\
        schema: emrops.checklist/1
        id: long
        title: Long
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: chatty
                title: Chatty
                instructions: prints a lot
                check: {{run: "{sys.executable} -c 'print(\\"x\\" * 9999 + \\"END\\")'"}}
        """,
    )
    assert cli("checklist", "run", str(path), "--non-interactive").exit_code == 0
    check = by_id(only_run(tmp_path))["chatty"]["check"]
    assert check["truncated"] is True
    head, cut, tail = check["output"].split("\n", 2)
    assert head == "x" * 1000 and cut == "[... 6003 characters cut ...]"
    assert tail == "x" * 2996 + "END\n"


class ScriptedIO:
    """A RunnerIO that answers from a list and records what it was shown."""

    def __init__(self, answers: list[str]):
        self.answers = answers
        self.shown: list[str] = []

    def show_item(self, item, position, total, record) -> None:
        self.shown.append(item.id)

    def check_started(self, item, command) -> None:
        self.shown.append(f"$ {command}")

    def check_finished(self, item, result) -> None:
        self.shown.append(result.summary())

    def choose(self, question, choices, default) -> str:
        answer = self.answers.pop(0)
        assert answer in choices, (answer, choices)
        return answer

    def ask_text(self, prompt, *, required) -> str:
        return self.answers.pop(0)

    def warn(self, message) -> None:
        self.shown.append(f"warn: {message}")


def test_runner_check_then_person(tmp_path: Path) -> None:
    from emrops.checklist import loader
    from emrops.checklist.runner import Runner, default_check_fn, new_run
    from emrops.checklist.store import RunStore

    path = write(
        tmp_path / "both.yaml",
        """\
        schema: emrops.checklist/1
        id: both
        title: Both
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: plan
                title: Plan and review
                instructions: plan
                check: {run: "sh -c 'exit 4'", expect_exit: [0, 4], confirm: true}
                evidence:
                  - {id: reviewer, prompt: Reviewer}
                  - {id: minutes, prompt: Minutes, kind: number}
        """,
    )
    checklist = loader.load_file(path)
    store = RunStore(tmp_path / "runs")
    ci = Runner(
        checklist, new_run(checklist, None, "x"), store, ScriptedIO([]), False, default_check_fn()
    )
    rec = ci.execute().items[0]
    assert (rec.status, rec.reason) == ("pending", "check passed; needs evidence")
    io = ScriptedIO(["done", "Ada", "about ten", "10min"])
    person = Runner(checklist, store.load(ci.run.run_id), store, io, True, default_check_fn())
    rec = person.execute().items[0]
    assert (rec.status, rec.method, rec.answer) == ("done", "auto+manual", "done")
    assert rec.evidence == {"reviewer": "Ada", "minutes": "10min"}
    assert rec.check is not None and rec.check["exit_code"] == 4
    assert "warn: Minutes: expected a number (optionally with a unit, e.g. 12min)" in io.shown
    assert io.shown[:3] == ["plan", "$ sh -c 'exit 4'", "exit 4"]
