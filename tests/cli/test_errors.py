"""Exit codes and error messages: `Error: ...` / `Try: ...` on stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from emrops.cli.app import confirm, make_app
from emrops.errors import (
    Busy,
    ChangesPending,
    CheckFailed,
    DatabaseError,
    EmropsError,
    ExitCode,
    Interrupted,
    UsageError,
)


def test_documented_exit_codes_are_fixed() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "ERROR": 1,
        "USAGE": 2,
        "CHECK_FAILED": 3,
        "PENDING": 4,
        "BUSY": 75,
        "INTERRUPTED": 130,
    }


def _app_raising(exc: BaseException) -> typer.Typer:
    app = make_app("test frame")

    @app.command("boom")
    def boom() -> None:
        raise exc

    @app.command("other")
    def other() -> None:
        typer.echo("fine")

    return app


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (EmropsError("plain failure", hint="do the thing"), 1),
        (DatabaseError("db gone", hint="start it"), 1),
        (UsageError("bad value", hint="use a good one"), 2),
        (CheckFailed("checksum mismatch", hint="restore another backup"), 3),
        (ChangesPending("2 changes pending", hint="apply them"), 4),
        (Busy("lock held by host1 pid 42", hint="wait"), 75),
        (Interrupted("stopped", hint="run again"), 130),
    ],
)
def test_each_error_class_maps_to_its_exit_code(exc: EmropsError, code: int) -> None:
    result = CliRunner().invoke(_app_raising(exc), ["boom"])
    assert result.exit_code == code
    assert result.stderr == f"Error: {exc.message}\nTry: {exc.hint}\n"
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_keyboard_interrupt_exits_130() -> None:
    result = CliRunner().invoke(_app_raising(KeyboardInterrupt()), ["boom"])
    assert result.exit_code == 130
    assert result.stderr == "Error: interrupted\n"


def test_unexpected_exception_is_reported_without_traceback() -> None:
    result = CliRunner().invoke(_app_raising(ZeroDivisionError("division by zero")), ["boom"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: unexpected ZeroDivisionError: division by zero",
        "Try: rerun with --debug for the traceback, and report it",
    ]


def test_secrets_in_error_messages_are_masked() -> None:
    exc = DatabaseError("cannot reach postgresql://app:topsecret@db/emrsim", hint="check it")
    result = CliRunner().invoke(_app_raising(exc), ["boom"])
    assert "topsecret" not in result.stderr
    assert "Error: cannot reach postgresql://app:***@db/emrsim" in result.stderr


def test_confirm_without_tty_needs_yes() -> None:
    app = make_app("test frame")

    @app.command("destroy")
    def destroy(yes: bool = typer.Option(False, "--yes")) -> None:
        confirm("Delete everything?", yes)
        typer.echo("deleted")

    @app.command("noop")
    def noop() -> None:
        pass

    no = CliRunner().invoke(app, ["destroy"])
    assert no.exit_code == 2
    assert no.stderr == (
        "Error: Delete everything: confirmation needed but stdin is not a terminal\n"
        "Try: rerun with --yes to confirm\n"
    )
    assert "deleted" not in no.stdout
    yes = CliRunner().invoke(app, ["destroy", "--yes"])
    assert yes.exit_code == 0 and yes.stdout == "deleted\n"


# --- through the real root app -------------------------------------------------------------


def test_version(cli) -> None:
    from emrops import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"emrops {__version__}\n"


def test_non_database_file_is_a_clear_error(cli, tmp_path: Path) -> None:
    bogus = tmp_path / "notes.txt"
    bogus.write_text("this is not a database, just some text that is long enough\n" * 20)
    result = cli("sim", "init-db", "--db", f"sqlite:///{bogus}")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: database error on sqlite:///{bogus}: file is not a database\n"
        "Try: check that --db points at an SQLite database file\n"
    )
    assert bogus.read_text().startswith("this is not a database")  # untouched


def test_unreachable_postgres_names_the_server_and_masks_password(cli) -> None:
    from tests.conftest import free_port

    port = free_port()
    result = cli("sim", "init-db", "--db", f"postgresql://app:pw-secret-1@127.0.0.1:{port}/emrsim")
    assert result.exit_code == 1
    first, hint = result.stderr.splitlines()[:2]
    assert first.startswith(
        f"Error: database error on postgresql+psycopg://app:***@127.0.0.1:{port}/emrsim:"
    )
    assert hint == "Try: check that PostgreSQL is running and the host/port in the URL are right"
    assert "pw-secret-1" not in result.stderr


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "mysql://root@localhost/x",
            "Error: unsupported database 'mysql' in 'mysql://root@localhost/x'",
        ),
        ("not a url", "Error: invalid database URL 'not a url'"),
        ("postgresql://u@h", "Error: database URL 'postgresql://u@h' names no database"),
    ],
)
def test_bad_database_urls_are_usage_errors(cli, url: str, line: str) -> None:
    result = cli("sim", "init-db", "--db", url)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == line
    assert result.stderr.splitlines()[1].startswith("Try: ")


def test_bad_maintenance_state_is_a_usage_error(cli) -> None:
    result = cli("sim", "maintenance", "sideways")
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: invalid state 'sideways'\nTry: use `emrops sim maintenance on` or `... off`\n"
    )


def test_unknown_option_is_exit_2(cli) -> None:
    result = cli("sim", "init-db", "--frobnicate")
    assert result.exit_code == 2
    assert "No such option" in result.stderr


def test_invalid_log_format_flag(cli) -> None:
    result = cli("--log-format", "xml", "config", "show")
    assert result.exit_code == 2
    assert result.stderr == "Error: invalid --log-format 'xml'\nTry: use text or json\n"


def test_debug_shows_the_traceback(cli, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"garbage" * 100)
    result = cli("--debug", "sim", "init-db", "--db", f"sqlite:///{bogus}")
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "Error: database error on" in result.stderr


def test_json_logs_carry_the_run_id(tmp_path: Path) -> None:
    """A real process: `--log-format json` writes JSON lines on stderr with one run id."""
    db = tmp_path / "emrsim.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "emrops",
            "--log-format",
            "json",
            "--debug",
            "sim",
            "init-db",
            "--db",
            f"sqlite:///{db}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["revision"]  # stdout is only the JSON result
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert lines, proc.stderr
    run_ids = {line["run_id"] for line in lines}
    assert len(run_ids) == 1 and next(iter(run_ids))
    assert all(line["ts"].endswith("Z") for line in lines)
