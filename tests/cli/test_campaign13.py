"""Session 13: the CLI frame against its standard streams: closed stdin, stdout or stderr
(`<&-`, `>&-`, `2>&-`), a reader that has gone (`| head -0`), and narrow terminals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BASIC = """\
schema: emrops.checklist/1
id: basic
title: Basic
version: 1
sections:
  - id: s
    title: S
    items:
      - id: a
        title: A
        instructions: x
        check:
          run: "sh -c 'echo first line of the check output that is long; exit 3'"
      - id: m
        title: M
        instructions: y
"""


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_") and k != "CI"}
    return {**base, "EMROPS_STATE_DIR": str(tmp_path / "state")}


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`emrops ARGS` through sh, so redirections like <&- close the stream for real."""
    emrops = f"{sys.executable} -m emrops"
    return subprocess.run(
        ["sh", "-c", command.replace("emrops", emrops, 1)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=60,
    )  # fmt: skip


def test_a_closed_stdin_reads_as_end_of_input(tmp_path: Path, env: dict[str, str]) -> None:
    # sys.stdin was None: "unexpected AttributeError: 'NoneType' object has no attribute
    # 'isatty'" (and "input(): lost sys.stdin" with --interactive)
    (tmp_path / "basic.yaml").write_text(BASIC)
    plain = shell("emrops checklist run ./basic.yaml <&-", tmp_path, env)
    assert plain.returncode == 3, plain.stderr  # non-interactive: the check failed
    assert "unexpected" not in plain.stderr
    assert "pending: m: M (manual item" in plain.stderr
    asked = shell("emrops checklist run ./basic.yaml --interactive <&-", tmp_path, env)
    assert asked.returncode == 130, asked.stderr
    assert "Error: input ended: checklist run " in asked.stderr
    assert "unexpected" not in asked.stderr


def test_a_closed_stderr_or_stdout_does_not_fail_the_command(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # with stderr closed `checklist list` exited 1 (writing to None), its output lost
    listed = shell("emrops checklist list 2>&-", tmp_path, env)
    assert listed.returncode == 0
    assert listed.stdout.startswith("name\ttitle\titems\t")
    as_json = shell("emrops checklist list --json 2>&-", tmp_path, env)
    assert {row["name"] for row in json.loads(as_json.stdout)} >= {"recovery-drill"}
    closed = shell("emrops checklist list >&-", tmp_path, env)
    assert closed.returncode == 0 and "unexpected" not in closed.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["checklist", "list", "--json"],
        ["checklist", "list"],
        ["checklist", "export", "production-deployment", "--format", "md"],
        ["--log-format", "json", "config", "show", "--json"],
    ],
)
def test_a_reader_that_has_gone_stops_the_command_quietly(
    tmp_path: Path, env: dict[str, str], args: list[str]
) -> None:
    # `emrops ... | head -0`: "Error: unexpected BrokenPipeError ... report it"
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written
    try:
        result = subprocess.run(
            [sys.executable, "-m", "emrops", *args],
            stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
            timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "unexpected" not in result.stderr
    assert "BrokenPipeError" not in result.stderr and "Exception ignored" not in result.stderr


def test_check_output_is_wrapped_not_cropped_on_a_narrow_terminal(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # the check's output panel cut every line at the width: "first line of th"
    (tmp_path / "basic.yaml").write_text(BASIC)
    result = shell("COLUMNS=20 emrops checklist run ./basic.yaml --non-interactive", tmp_path, env)
    assert result.returncode == 3
    panel = [line.strip("│ ") for line in result.stderr.splitlines() if line.startswith("│")]
    assert " ".join(panel) == "first line of the check output that is long"


@pytest.mark.parametrize(
    "args",
    [
        ["checklist", "list", "--json"],
        ["checklist", "list"],
        ["config", "show"],
        ["--log-format", "json", "checklist", "export", "recovery-drill", "--format", "md"],
        ["--version"],
        ["--help"],
    ],
)
def test_stdout_on_a_full_device_is_an_error_not_a_crash(
    tmp_path: Path, env: dict[str, str], args: list[str]
) -> None:
    # `emrops ... > /dev/full` (or into a full disk): "unexpected OSError: [Errno 28] ...
    # report it", and a traceback for --help and --version
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "emrops", *args],
            stdout=full, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env, timeout=60,
        )  # fmt: skip
    assert result.returncode == 1
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    if "--log-format" in args:
        assert json.loads(last)["message"] == (
            "cannot write the output (stdout): No space left on device"
        )
    else:
        assert result.stderr.strip().splitlines()[-2] == (
            "Error: cannot write the output (stdout): No space left on device"
        )


def on_terminal(args: list[str], cwd: Path, env: dict[str, str], columns: int) -> str:
    """emrops's stdout and stderr on a real pseudo-terminal COLUMNS wide, escapes removed."""
    import pty
    import re
    import select

    child_env = {k: v for k, v in env.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "emrops", *args], stdin=slave, stdout=slave, stderr=slave,
        cwd=cwd, env={**child_env, "COLUMNS": str(columns), "TERM": "xterm"},
    )  # fmt: skip
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(timeout=30) == 0, out
    return re.sub(r"\x1b\[[0-9;]*m", "", out.decode("utf-8", "replace")).replace("\r", "")


def test_a_table_wider_than_the_terminal_loses_nothing(tmp_path: Path, env: dict[str, str]) -> None:
    # rich cut long words with "…" (db_url "sqlite:////tmp/…", checklist names "re…") and
    # shrank columns to nothing (`schedule show` at 60 columns had no schedule column)
    db = "sqlite:///a/very/long/path/to/the/database/folder/of/emrsim/emrsim-production.db"
    (tmp_path / "emrops.toml").write_text(f'db_url = "{db}"\n')
    shown = on_terminal(["config", "show"], tmp_path, env, 80)
    assert "…" not in shown
    rows = [line.split("│")[1:3] for line in shown.splitlines() if line.count("│") == 4]
    start = next(i for i, (setting, _) in enumerate(rows) if setting.strip() == "db_url")
    value = rows[start][1].strip()
    for setting, more in rows[start + 1 :]:
        if setting.strip():
            break
        value += more.strip()
    assert value == f"sqlite:///{tmp_path}/{db[10:]}"
    listed = on_terminal(["checklist", "list"], tmp_path, env, 40)
    assert "name: production-deployment" in listed and "…" not in listed
    jobs = on_terminal(["schedule", "show"], tmp_path, env, 30)
    assert "schedule: 0 4 * * sun" in jobs and "job: drill" in jobs


def test_error_and_log_lines_show_terminal_escapes_inert(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # "Error: checklist file not found: ./\x1b]0;pwned\x07.yaml" retitled the terminal (click
    # strips colours only), and log lines quoting a path or a server's reply did the same
    hostile = "./\x1b]0;pwned\x07x.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "emrops", "checklist", "run", hostile],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert "not found: \\x1b]0;pwned\\x07x.yaml" in result.stderr
    from tests.sim.conftest import init_db

    init_db(f"sqlite:///{tmp_path / 'emrsim.db'}")
    (tmp_path / "emrops.toml").write_text(
        'db_url = "sqlite:///emrsim.db"\n[backup]\nstore = "store\\u001b[2J"\n'
    )
    ran = subprocess.run(
        [sys.executable, "-m", "emrops", "schedule", "run-job", "backup"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "\x1b" not in ran.stderr
    assert f"published to {tmp_path}/store\\x1b[2J" in ran.stderr


def test_a_line_break_in_a_log_message_cannot_pass_for_a_log_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from emrops.logs import get_logger, setup_logging

    setup_logging("text", "info")
    get_logger("test").error("job failed: %s", "boom\n12:00:00 INFO    job backup: success")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].split(" ", 1)[1].startswith("ERROR   job failed: boom")
    assert (
        lines[1] == "    12:00:00 INFO    job backup: success  [run " + lines[1].split("[run ")[1]
    )


def test_paths_that_look_like_markup_are_printed_as_they_are(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # "Error: unexpected MarkupError: closing tag '[/y]' ..." after the files were written
    folder = tmp_path / "d[/y]"
    folder.mkdir(parents=True)
    docs = subprocess.run(
        [sys.executable, "-m", "emrops", "checklist", "docs", "--dir", str(folder)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert docs.returncode == 0, docs.stderr
    assert f"{folder}: 5 of 5 documents rewritten" in docs.stderr
    units = subprocess.run(
        [sys.executable, "-m", "emrops", "schedule", "install", "--systemd", "--out-dir",
         str(folder)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert units.returncode == 0, units.stderr
    assert f"to {folder}" in units.stderr


def test_a_console_message_that_is_not_valid_markup_is_printed_literally(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from emrops.cli.render import StatusConsole

    console = StatusConsole(stderr=True, highlight=False, soft_wrap=True)
    console.print("restored into /srv/[/x]/db [bold]")
    assert capsys.readouterr().err == "restored into /srv/[/x]/db [bold]\n"
