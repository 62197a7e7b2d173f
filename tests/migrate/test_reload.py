"""--reload-cmd: no shell unless asked, a timeout that kills the process group, masked output;
cutover without it says what the operator must do next."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from emrops.errors import UsageError
from emrops.migrate.reload import ReloadCommand, run_reload


def test_runs_without_a_shell_by_default(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    outcome = run_reload(ReloadCommand(f"echo reloaded > {marker}"))
    assert outcome.ok and outcome.detail == "exit 0"
    assert not marker.exists()  # `>` was an argument of echo, not a redirect


def test_shell_only_when_asked(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    outcome = run_reload(ReloadCommand(f"echo reloaded > {marker}", shell=True))
    assert outcome.ok
    assert marker.read_text().strip() == "reloaded"


def test_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    outcome = run_reload(ReloadCommand(script, shell=True, timeout_s=0.5))
    assert time.monotonic() - started < 10
    assert not outcome.ok and outcome.detail == "killed after its 0.5s timeout"
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text()


def test_timeout_bounds_a_command_whose_child_holds_the_output_open(tmp_path: Path) -> None:
    # no shell; the command's own child inherits its stdout and outlives it: the reload must
    # still end at its timeout (not at the child's EOF 30 s later) and the child must be gone
    pidfile = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen(['sleep', '30']); "
        f"open({str(pidfile)!r}, 'w').write(str(c.pid)); time.sleep(30)"
    )
    started = time.monotonic()
    outcome = run_reload(ReloadCommand(f"{sys.executable} -c {json.dumps(code)}", timeout_s=1.0))
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed
    assert not outcome.ok and outcome.detail == "killed after its 1s timeout"
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.05)
    assert not _running(child), "the reload command's child outlived its timeout"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_failure_detail_is_masked_and_names_the_exit(tmp_path: Path) -> None:
    code = "import sys; print('PGPASSWORD=hunter2 refused'); sys.exit(3)"
    outcome = run_reload(ReloadCommand(f"{sys.executable} -c {json.dumps(code)}"))
    assert not outcome.ok
    assert outcome.detail == "exit 3: PGPASSWORD=*** refused"


def test_missing_program_is_an_outcome_not_a_crash() -> None:
    outcome = run_reload(ReloadCommand("/nonexistent/reload-app"))
    assert not outcome.ok and outcome.detail.startswith("cannot start it:")


def test_unparseable_command_is_a_usage_error_before_anything_changes() -> None:
    with pytest.raises(UsageError, match="cannot parse --reload-cmd"):
        ReloadCommand("kill -HUP 'unterminated").check()


def test_cli_rejects_unparseable_reload_cmd_with_exit_2(cli, pg_url: str) -> None:
    result = cli(
        "migrate-db",
        "cutover",
        "--from",
        "sqlite:///nowhere.db",
        "--to",
        pg_url,
        "--reload-cmd",
        "kill 'x",
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot parse --reload-cmd")


def test_cutover_without_reload_cmd_says_what_to_do_next(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "app.db"
    seeded = cli("sim", "seed", "--db", f"sqlite:///{db}", "--sessions", "3", "--seed", "1")
    assert seeded.exit_code == 0, seeded.stderr
    config = tmp_path / "emrops.toml"
    config.write_text(f'db_url = "sqlite:///{db}"\n')
    src = f"sqlite:///{db}"
    run = cli(
        "--config", str(config), "migrate-db", "run", "--from", src, "--to", pg_url, "--online"
    )
    assert run.exit_code == 0, run.stderr
    cut = cli(
        "--config", str(config), "migrate-db", "cutover", "--from", src, "--to", pg_url, "--json"
    )
    assert cut.exit_code == 0, cut.stderr
    out = json.loads(cut.stdout)
    assert out["reload"] is None
    assert len(out["next_steps"]) == 1
    step = out["next_steps"][0]
    assert "reload or restart it now" in step and str(config) in step
    assert f"next: {step}" in " ".join(cut.stderr.split())
    assert oct(config.stat().st_mode & 0o777) == "0o600"
