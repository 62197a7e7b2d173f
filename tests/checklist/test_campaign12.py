"""Hostile checklists and checks: markup and terminal escapes in titles and output, checks
that leave a daemon holding their output, print hundreds of megabytes or die by a signal,
and files that are not UTF-8, hold unpaired surrogates or are huge."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.checklist.conftest import by_id, only_run, write
from tests.sockets.restartable import alive


@pytest.fixture(autouse=True)
def _no_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)


def one_check(path: Path, run: str, title: str = "T", timeout: str = "20s") -> Path:
    data = {
        "schema": "emrops.checklist/1",
        "id": path.stem,
        "title": title,
        "version": 1,
        "sections": [
            {
                "id": "s",
                "title": "S",
                "items": [
                    {
                        "id": "c",
                        "title": title,
                        "instructions": f"about {title}",
                        "check": {"run": run, "timeout": timeout},
                    },
                    {"id": "m", "title": f"manual {title}", "instructions": "by hand"},
                ],
            }
        ],
    }
    path.write_text(json.dumps(data), encoding="utf-8")  # JSON is YAML
    return path


HOSTILE = "Deploy [/bold] [red]x\x1b[2J\x1b]0;pwned\x07 \u202eevil"


def test_markup_and_terminal_escapes_are_shown_inert(cli, tmp_path: Path) -> None:
    # rich read a title as markup ("unexpected MarkupError") and let ESC sequences through
    printer = "printf '\\033[31mred\\033]2;t\\007 [/x]\\n'"
    path = one_check(tmp_path / "hostile.yaml", f"sh -c {json.dumps(printer)}", HOSTILE)
    result = cli("checklist", "run", str(path), "--interactive", input="d\nd\n")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stderr and "\u202e" not in result.stderr
    assert "[/bold] [red]x\\x1b[2J\\x1b]0;pwned\\x07 \\u202eevil" in result.stderr
    assert "\\x1b[31mred\\x1b]2;t\\x07 [/x]" in result.stderr  # the check's output
    items = by_id(only_run(tmp_path))
    assert items["c"]["status"] == "done" and items["c"]["title"] == HOSTILE  # kept as written
    for args in (["show", str(path)], ["status"], ["status", only_run(tmp_path)["run_id"]]):
        shown = cli("checklist", *args)
        assert shown.exit_code == 0, shown.stderr
        assert "\x1b" not in shown.stdout + shown.stderr, args


def test_a_daemon_holding_the_output_open_neither_hangs_nor_fails_the_check(
    cli, tmp_path: Path
) -> None:
    # the check exits 0 at once; a process it started in its own session keeps the pipe:
    # the run waited for it (for ever with `sleep infinity`) and called the check timed out
    pidfile = tmp_path / "daemon.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo started; exit 0"
    path = one_check(tmp_path / "daemon.yaml", f"sh -c {json.dumps(script)}", timeout="20s")
    started = time.monotonic()
    try:
        result = cli("checklist", "run", str(path), "--non-interactive")
        elapsed = time.monotonic() - started
    finally:
        deadline = time.monotonic() + 5
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert result.exit_code == 0, result.stderr
    assert elapsed < 6, elapsed
    check = by_id(only_run(tmp_path))["c"]
    assert check["status"] == "done" and check["check"]["exit_code"] == 0
    assert check["check"]["timed_out"] is False
    assert check["check"]["output"].startswith("started\n")
    assert "kept its output open" in check["check"]["output"]


def test_hundreds_of_megabytes_of_output_are_read_in_bounded_memory(tmp_path: Path) -> None:
    # all output was kept in memory (300 MB of check output: 900 MB RSS and 37 s)
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking pytest
    code = """
import re
from emrops.checklist.commands import run_check
from emrops.checklist.model import Check
r = run_check(Check(run="sh -c 'head -c 100000000 /dev/zero | tr \\\\0 x; echo END'"), None)
peak = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(r.passed, r.truncated, repr(r.output[-4:]), peak)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    passed, truncated, tail, maxrss_kb = out.stdout.split()
    assert (passed, truncated, tail) == ("True", "True", "'END\\n'")
    assert int(maxrss_kb) < 120_000, maxrss_kb


def test_output_cut_note_counts_what_was_dropped() -> None:
    from emrops.checklist.commands import MAX_OUTPUT, run_check
    from emrops.checklist.model import Check

    result = run_check(Check(run=f"{sys.executable} -c \"print('y' * 100000)\""), None)
    head, cut, tail = result.output.split("\n", 2)
    assert head == "y" * (MAX_OUTPUT // 4)
    assert cut == f"[... {100001 - MAX_OUTPUT} characters cut ...]"
    assert tail == "y" * (MAX_OUTPUT - MAX_OUTPUT // 4 - 1) + "\n"


def test_a_check_killed_by_a_signal_says_so(cli, tmp_path: Path) -> None:
    path = one_check(tmp_path / "sig.yaml", "sh -c 'kill -TERM $$'")
    result = cli("checklist", "run", str(path), "--non-interactive")
    assert result.exit_code == 3, result.stderr
    item = by_id(only_run(tmp_path))["c"]
    assert item["status"] == "failed"
    assert item["reason"] == "check failed: killed by signal SIGTERM (15), expected exit 0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "\ufeffid: x\n".encode("utf-16"),
            "enc.yaml:1: checklist is UTF-16 text, not UTF-8",
        ),
        (b"id: enc\ntitle: caf\xe9\n", "enc.yaml:2: checklist is not UTF-8 text (byte 0xe9)"),
        (
            b'schema: emrops.checklist/1\nid: enc\ntitle: "a \\ud800 b"\n',
            "enc.yaml:3: text holds an unpaired UTF-16 surrogate (\\ud800)",
        ),
        (b'{"\\udc80": 1}\n', "enc.yaml:1: text holds an unpaired UTF-16 surrogate (\\udc80)"),
    ],
)
def test_text_that_is_not_utf8_is_refused_naming_the_line(
    cli, tmp_path: Path, content: bytes, message: str
) -> None:
    # a "\ud800" escape loaded, then `report --format md` died with "unexpected UnicodeEncodeError"
    (tmp_path / "enc.yaml").write_bytes(content)
    for command in ("show", "run", "export"):
        extra = ["--non-interactive"] if command == "run" else []
        result = cli("checklist", command, str(tmp_path / "enc.yaml"), *extra)
        assert result.exit_code == 2, (command, result.stderr)
        assert message in result.stderr and "unexpected" not in result.stderr
        assert "Try: " in result.stderr


def test_a_huge_file_is_refused_at_once(cli, tmp_path: Path) -> None:
    path = write(tmp_path / "huge.yaml", "id: huge\n" + "# padding\n" * 500_000)
    started = time.monotonic()
    result = cli("checklist", "show", str(path))
    assert result.exit_code == 2, result.stderr
    assert "huge.yaml is larger than 1 MB: not a checklist" in result.stderr
    assert time.monotonic() - started < 1


def test_sighup_kills_the_running_check_and_saves_the_run(tmp_path: Path) -> None:
    # a dropped ssh session: SIGHUP's default action ended emrops alone, the check (in its
    # own session) ran on as an orphan and the run stayed "in-progress"
    pidfile = tmp_path / "check.pid"
    path = one_check(tmp_path / "hup.yaml", f"sh -c 'echo $$ > {pidfile}; exec sleep 300'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env.update(EMROPS_STATE_DIR=str(tmp_path / "state"), CI="true")
    command = [sys.executable, "-m", "emrops", "checklist", "run", str(path)]
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path
    )
    check_pid = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not check_pid:
            time.sleep(0.1)
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            check_pid = int(text) if text else 0
        assert check_pid, "the check did not start"
        proc.send_signal(signal.SIGHUP)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        if check_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(check_pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert b"interrupted: checklist run" in err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(check_pid):
        time.sleep(0.05)
    assert not alive(check_pid), "the check outlived the run"
    run = only_run(tmp_path, tmp_path / "state")
    assert run["status"] == "interrupted"


def test_a_run_file_edited_to_other_items_is_refused_not_a_key_error(cli, tmp_path: Path) -> None:
    # same checklist file, an item deleted from the run file: "unexpected KeyError: 'c'";
    # an item copied twice was reported (and counted) twice
    path = one_check(tmp_path / "edited.yaml", "true")
    assert cli("checklist", "run", str(path), "--non-interactive").exit_code == 0
    run = only_run(tmp_path)
    run_file = tmp_path / ".emrops" / "checklists" / "runs" / f"{run['run_id']}.json"
    run_file.write_text(json.dumps({**run, "items": [run["items"][1]]}))
    resumed = cli("checklist", "run", str(path), "--resume", run["run_id"], "--non-interactive")
    assert resumed.exit_code == 2, resumed.stderr
    assert f"run {run['run_id']} does not match checklist edited: no record of c" in (
        resumed.stderr
    )
    assert "unexpected" not in resumed.stderr and "--force" in resumed.stderr
    forced = cli(
        "checklist", "run", str(path), "--resume", run["run_id"], "--non-interactive", "--force"
    )
    assert forced.exit_code == 0, forced.stderr
    assert [i["id"] for i in only_run(tmp_path)["items"]] == ["c", "m"]
    assert by_id(only_run(tmp_path))["c"]["status"] == "done"  # the check ran again

    twice = only_run(tmp_path)
    run_file.write_text(json.dumps({**twice, "items": [twice["items"][0]] * 2}))
    for args in (["report", twice["run_id"]], ["status", twice["run_id"]]):
        result = cli("checklist", *args)
        assert result.exit_code == 2, result.stderr
        assert "is damaged: item 2 repeats the id 'c'" in result.stderr


def test_variable_values_never_show_in_a_command_line_and_secret_ones_are_masked(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "Running check: echo tok-s3cr3t-999" on the terminal and in the run file, and the
    # value again in the check's output
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-s3cr3t-999")
    monkeypatch.setenv("TARGET_HOST", "db-7.internal")
    path = one_check(tmp_path / "vars.yaml", "echo ${DEPLOY_TOKEN} ${TARGET_HOST}")
    result = cli("checklist", "run", str(path), "--non-interactive")
    assert result.exit_code == 0, result.stderr
    assert "Running check: echo ${DEPLOY_TOKEN} ${TARGET_HOST}" in result.stderr
    check = by_id(only_run(tmp_path))["c"]["check"]
    assert check["command"] == "echo ${DEPLOY_TOKEN} ${TARGET_HOST}"
    assert check["output"] == "*** db-7.internal\n"  # the ordinary value is output as it is
    for written in (tmp_path / ".emrops").rglob("*"):
        if written.is_file():
            assert "tok-s3cr3t-999" not in written.read_text(), written
    assert "tok-s3cr3t-999" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"id: nul\n\x00\n", "bad.yaml:2: malformed YAML: character U+0000 is not allowed"),
        (
            b'!!python/object/apply:os.system ["true"]\n',
            "bad.yaml:1: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not "
            "allowed in a checklist",
        ),
        (
            b"id: bad\ntitle: !!binary aGVsbG8=\n",
            "bad.yaml:2: YAML tag 'tag:yaml.org,2002:binary' is not allowed in a checklist",
        ),
        (
            b"schema: emrops.checklist/1\nid: bad\ntitle: t\nversion: 1\nsections:\n"
            b"  - {id: s, title: S, items: [{id: a, title: A, instructions: x,\n"
            b"     check: {run: 'true', expect_exit: [-1, 256]}}]}\n",
            "expect_exit: [-1, 256] is not an exit code (0-255) or a list of exit codes",
        ),
    ],
)
def test_control_characters_tags_and_bad_exit_codes_are_named(
    cli, tmp_path: Path, content: bytes, message: str
) -> None:
    # NUL: "unexpected ReaderError"; a tag on a mapping or sequence was silently dropped;
    # a bad expect_exit was "not a name or a list of names"
    (tmp_path / "bad.yaml").write_bytes(content)
    result = cli("checklist", "show", str(tmp_path / "bad.yaml"))
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr and "unexpected" not in result.stderr


def test_force_resume_redoes_items_whose_definition_changed(cli, tmp_path: Path) -> None:
    # --force kept every record by id: an item done under `true` stayed done after its check
    # became the real one, and the run reported complete for a step nobody did as written
    path = tmp_path / "changed.yaml"
    data = json.loads(one_check(path, "true").read_text())
    data["sections"][0]["items"].append(
        {"id": "k", "title": "Kept", "instructions": "same", "check": {"run": "true"}}
    )
    path.write_text(json.dumps(data))
    assert cli("checklist", "run", str(path), "--non-interactive").exit_code == 0
    run_id = only_run(tmp_path)["run_id"]
    assert by_id(only_run(tmp_path))["c"]["status"] == "done"
    items = data["sections"][0]["items"]
    items[0]["check"]["run"] = "sh -c 'exit 4'"  # the real check now
    data["sections"][0]["items"] = [items[2], items[0], items[1]]  # and moved around
    path.write_text(json.dumps(data))
    args = ("checklist", "run", str(path), "--resume", run_id, "--non-interactive", "--force")
    result = cli(*args)
    assert result.exit_code == 3, result.stderr
    after = by_id(only_run(tmp_path))
    assert after["c"]["status"] == "failed" and after["c"]["check"]["exit_code"] == 4
    assert after["k"]["status"] == "done" and after["k"]["attempts"] == 1  # moved, not redone
    assert [i["id"] for i in only_run(tmp_path)["items"]] == ["k", "c", "m"]
    events = (tmp_path / ".emrops" / "checklists" / "runs" / f"{run_id}.events.jsonl").read_text()
    assert '"item": "c", "status": "failed"' in events


def test_reports_of_binary_check_output_stay_well_formed(cli, tmp_path: Path) -> None:
    # a NUL, ESC or form feed in check output was written into the JUnit XML as it was:
    # "not well-formed (invalid token)", so CI could not publish the checklist at all
    import xml.etree.ElementTree as ET

    path = one_check(tmp_path / "bin.yaml", "printf 'a\\001 \\033[31m \\000 \\014 z'", "T\x1b")
    assert cli("checklist", "run", str(path), "--non-interactive").exit_code == 0
    run_id = only_run(tmp_path)["run_id"]
    junit = cli("checklist", "report", run_id, "--format", "junit")
    assert junit.exit_code == 0, junit.stderr
    out = ET.fromstring(junit.stdout.encode("utf-8")).find(".//system-out")
    assert out is not None and out.text is not None
    assert out.text.endswith("a\\x01 \\x1b[31m \\x00 \\x0c z")
    md = cli("checklist", "report", run_id, "--format", "md")
    assert md.exit_code == 0 and "\x1b" not in md.stdout and "\x00" not in md.stdout
    assert "a\\x01 \\x1b[31m \\x00 \\x0c z" in md.stdout
    raw = cli("checklist", "report", run_id, "--format", "json")  # JSON escapes them itself
    assert json.loads(raw.stdout)["items"][0]["check"]["output"] == "a\x01 \x1b[31m \x00 \x0c z"


def test_export_writes_control_characters_as_escapes(cli, tmp_path: Path) -> None:
    path = one_check(tmp_path / "exp.yaml", "true", "Deploy \x1b[2J now")
    result = cli("checklist", "export", str(path), "--format", "md")
    assert result.exit_code == 0, result.stderr
    assert "\x1b" not in result.stdout and "# Deploy \\x1b[2J now" in result.stdout
