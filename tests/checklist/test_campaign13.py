"""Session 13: hostile checklists. Evidence patterns that backtrack for ever, and more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emrops.checklist.patterns import PatternTimeout, full_match, pattern_problem


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def with_evidence(path: Path, pattern: str) -> Path:
    data = {
        "schema": "emrops.checklist/1",
        "id": path.stem,
        "title": "T",
        "version": 1,
        "sections": [
            {
                "id": "s",
                "title": "S",
                "items": [
                    {
                        "id": "m",
                        "title": "M",
                        "instructions": "by hand",
                        "evidence": [{"id": "t", "prompt": "Ticket", "pattern": pattern}],
                    }
                ],
            }
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return path


def emrops(*args: str, cwd: Path, input: str = "", timeout: float = 30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_") and k != "CI"}
    env["EMROPS_STATE_DIR"] = str(cwd / "state")
    return subprocess.run(
        [sys.executable, "-m", "emrops", *args],
        input=input, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize("pattern", ["(a+)+$", "(?:x*)*", "((\\w+))+", "(a+?){2,}"])
def test_a_group_that_only_repeats_a_repeat_is_refused_at_load(
    tmp_path: Path, pattern: str
) -> None:
    path = with_evidence(tmp_path / "redos.yaml", pattern)
    result = emrops("checklist", "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert f"{path}:1: pattern {pattern!r} repeats a group that only repeats" in result.stderr


@pytest.mark.parametrize("pattern", ["OPS-[0-9]+", "v(\\d+\\.)*\\d+", "(ab|cd)+", "a{2}(b+)?"])
def test_ordinary_patterns_are_accepted(pattern: str) -> None:
    assert pattern_problem(pattern) is None


def test_a_pattern_that_backtracks_for_ever_does_not_hang_the_prompt(tmp_path: Path) -> None:
    # `(a|a)*` passes the shape check; against 40 a's and a b it backtracks 2**40 times:
    # the prompt hung for ever (Ctrl-C was the only way out, the answer never decided)
    path = with_evidence(tmp_path / "slow.yaml", "(a|a)*")
    started = time.monotonic()
    result = emrops(
        "checklist", "run", str(path), "--interactive",
        cwd=tmp_path, input="d\n" + "a" * 40 + "b\n" + "aaaa\n",
    )  # fmt: skip
    assert time.monotonic() - started < 20
    assert result.returncode == 0, result.stderr
    assert (
        "Ticket: the checklist's pattern (a|a)* could not decide this answer within 1 s"
        in result.stdout + result.stderr
    )
    run = json.loads(next((tmp_path / "state" / "checklists" / "runs").glob("*.json")).read_text())
    assert run["items"][0]["status"] == "done"
    assert run["items"][0]["evidence"] == {"t": "aaaa"}


def test_full_match_has_a_deadline_and_restores_the_alarm() -> None:
    started = time.monotonic()
    with pytest.raises(PatternTimeout):
        full_match("(a|a)*", "a" * 40 + "b", deadline=0.2)
    assert time.monotonic() - started < 2
    import signal

    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert full_match("OPS-[0-9]+", "OPS-12") is True
    assert full_match("OPS-[0-9]+", "OPS-12" * 2000) is False  # longer than any answer


def test_a_run_file_from_a_newer_emrops_says_so(tmp_path: Path) -> None:
    # was: "... is not a checklist run file (emrops.checklist-run/1)", as for any other file
    path = tmp_path / "basic.yaml"
    path.write_text(
        json.dumps(
            {
                "schema": "emrops.checklist/1", "id": "basic", "title": "B", "version": 1,
                "sections": [{"id": "s", "title": "S", "items": [
                    {"id": "a", "title": "A", "instructions": "x", "check": {"run": "true"}}]}],
            }
        )
    )  # fmt: skip
    assert emrops("checklist", "run", str(path), cwd=tmp_path).returncode == 0
    run_file = next((tmp_path / "state" / "checklists" / "runs").glob("*.json"))
    data = json.loads(run_file.read_text())
    run_file.write_text(json.dumps({**data, "format": "emrops.checklist-run/2"}))
    result = emrops("checklist", "run", str(path), "--resume", run_file.stem, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"Error: run file {run_file} has format emrops.checklist-run/2; this emrops reads "
        "emrops.checklist-run/1 (the file was written by a newer emrops)",
        "Try: use the emrops version that wrote it",
    ]


@pytest.mark.parametrize("timeout", ["0s", "0ms", "0m0s"])
def test_a_check_timeout_of_zero_is_refused_at_load(tmp_path: Path, timeout: str) -> None:
    # was accepted: the check was killed before it started and the item always failed
    path = tmp_path / "zero.yaml"
    path.write_text(
        "schema: emrops.checklist/1\nid: zero\ntitle: Z\nversion: 1\nsections:\n"
        "  - id: s\n    title: S\n    items:\n      - id: a\n        title: A\n"
        f"        instructions: x\n        check:\n          run: 'true'\n"
        f"          timeout: {timeout}\n"
    )
    result = emrops("checklist", "run", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert f"{path}:14: timeout {timeout!r} leaves the check no time to run" in result.stderr
    assert not (tmp_path / "state" / "checklists" / "runs").exists()  # no run was started


def _one_run(tmp_path: Path) -> tuple[Path, Path]:
    path = tmp_path / "basic.yaml"
    path.write_text(
        "schema: emrops.checklist/1\nid: basic\ntitle: B\nversion: 1\nsections:\n"
        "  - id: s\n    title: S\n    items:\n      - id: a\n        title: A\n"
        "        instructions: x\n        check:\n          run: 'echo hi'\n"
    )
    assert emrops("checklist", "run", str(path), cwd=tmp_path).returncode == 0
    return path, next((tmp_path / "state" / "checklists" / "runs").glob("*.json"))


@pytest.mark.parametrize(
    ("change", "damage"),
    [
        (
            lambda d: d["items"][0]["check"].update(output=5),
            "item 1: check 'output' is int, not str",
        ),
        (
            lambda d: d["items"][0]["check"].update(passed=1),
            "item 1: check 'passed' is int, not bool",
        ),
        (lambda d: d.update(status="bogus"), "run has status 'bogus'"),
    ],
)
def test_a_hand_edited_check_record_is_named_not_a_crash(tmp_path: Path, change, damage) -> None:
    # `"output": 5` in a run file: `checklist report` ended in "unexpected AttributeError"
    path, run_file = _one_run(tmp_path)
    data = json.loads(run_file.read_text())
    change(data)
    run_file.write_text(json.dumps(data))
    for args in (("report", run_file.stem, "--format", "md"), ("status", run_file.stem)):
        result = emrops("checklist", *args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert f"Error: run file {run_file} is damaged: {damage}" in result.stderr
        assert "unexpected" not in result.stderr


def test_a_run_file_naming_another_run_is_refused_and_that_run_is_left_alone(
    tmp_path: Path,
) -> None:
    # resumed, the run was saved under the id it names: another run's file overwritten
    path, first = _one_run(tmp_path)
    assert emrops("checklist", "run", str(path), cwd=tmp_path).returncode == 0
    files = sorted((tmp_path / "state" / "checklists" / "runs").glob("*.json"))
    other = next(f for f in files if f != first)
    before = other.read_bytes()
    data = json.loads(first.read_text())
    first.write_text(json.dumps({**data, "run_id": other.stem}))
    result = emrops("checklist", "run", str(path), "--resume", first.stem, cwd=tmp_path)
    assert result.returncode == 2
    assert f"Error: run file {first} is damaged: it holds run {other.stem!r}" in result.stderr
    assert other.read_bytes() == before


def test_an_audit_trail_cut_mid_line_does_not_swallow_the_next_entry(tmp_path: Path) -> None:
    # a trail whose last write was cut short had the next entry glued onto the torn line,
    # so that entry could no longer be read either
    path, run_file = _one_run(tmp_path)
    trail = run_file.with_name(run_file.stem + ".events.jsonl")
    trail.write_bytes(trail.read_bytes() + b'{"ts": "2026-12-05T00:00:00.000Z", "ev')
    result = emrops("checklist", "run", str(path), "--resume", run_file.stem, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = trail.read_text().splitlines()
    torn = lines.index('{"ts": "2026-12-05T00:00:00.000Z", "ev')
    after = [json.loads(line) for line in lines[torn + 1 :]]
    assert after and after[0]["event"] == "session-start"


def test_thousands_of_manual_items_run_in_seconds_not_hours(tmp_path: Path) -> None:
    # every manual item rewrote the whole run file (and deep-copied every record) in a
    # non-interactive run: 3000 items took more than 5 minutes, 16,000 (1 MB) hours
    items = "".join(
        f"      - id: i{n}\n        title: T{n}\n        instructions: x\n" for n in range(3000)
    )
    path = tmp_path / "big.yaml"
    path.write_text(
        "schema: emrops.checklist/1\nid: big\ntitle: B\nversion: 1\nsections:\n"
        "  - id: s\n    title: S\n    items:\n" + items
    )
    started = time.monotonic()
    result = emrops("checklist", "run", str(path), cwd=tmp_path, timeout=40)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    run_file = next((tmp_path / "state" / "checklists" / "runs").glob("*.json"))
    run = json.loads(run_file.read_text())
    assert run["counts"]["pending"] == 3000 and run["status"] == "incomplete"
    trail = run_file.with_name(run_file.stem + ".events.jsonl").read_text().splitlines()
    pending = [json.loads(line) for line in trail if '"event": "item"' in line]
    assert [e["item"] for e in pending] == [f"i{n}" for n in range(3000)]  # each audited
