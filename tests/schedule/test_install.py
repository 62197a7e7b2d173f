"""`schedule install`: crontab lines and systemd units with absolute paths, parsed back."""

from __future__ import annotations

import configparser
import json
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from croniter import croniter

from emrops.schedule import cron
from tests.schedule.conftest import write_config

JOBS = {"backup": "0 2 * * *", "verify": "30 2 * * *", "rotate": "0 3 * * *", "drill": "0 4 * * 0"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir()
    return write_config(folder, **{"": {"db_url": "sqlite:///var/emrsim.db"}, "schedule": JOBS})


def _check_command(words: list[str], config: Path, job_args: list[str]) -> None:
    executable = Path(words[0])
    assert executable.is_absolute() and executable.is_file(), words
    assert words[1:3] == ["--config", str(config)]
    assert Path(words[2]).is_absolute()
    assert words[3:5] == ["--log-format", "json"]
    assert words[5:] == job_args


def test_cron_lines_parse_back(cli, config: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    result = cli("--config", str(config), "schedule", "install", "--cron")
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert lines[0] == "CRON_TZ=UTC"
    entries = [line for line in lines if "=" not in line.split()[0]]
    assert len(entries) == 4
    for entry, (job, expression) in zip(entries, JOBS.items(), strict=True):
        fields = entry.split(maxsplit=5)
        schedule = " ".join(fields[:5])
        assert croniter.is_valid(schedule)
        # the crontab times are the configured ones (weekday 0 stays Sunday)
        start = datetime(2026, 11, 25, tzinfo=UTC)
        expected = cron.next_fire_times(cron.parse(expression), 3, start)  # type: ignore[arg-type]
        it = croniter(schedule, start)
        assert [it.get_next(datetime) for _ in range(3)] == expected
        words = shlex.split(fields[5])
        assert words[:3] == ["cd", str(config.parent), "&&"]
        redirect = words.index(">>")
        _check_command(words[3:redirect], config, ["schedule", "run-job", job])
        log_file = Path(words[redirect + 1])
        assert log_file.is_absolute() and log_file.parent.is_dir()
        assert log_file == config.parent / ".emrops" / "logs" / f"schedule-{job}.log"
        assert words[redirect + 2 :] == ["2>&1"]


def test_seconds_schedule_cannot_go_to_cron(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, schedule={**JOBS, "backup": "*/5 * * * * *"})
    result = cli("--config", str(config), "schedule", "install", "--cron")
    assert result.exit_code == 2
    assert (
        "Error: schedule '*/5 * * * * *' has a seconds field: cron cannot run it" in result.stderr
    )


def test_install_needs_exactly_one_kind(cli, config: Path) -> None:
    result = cli("--config", str(config), "schedule", "install")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: give one of --cron or --systemd")


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(text)
    return parser


def test_systemd_units(cli, config: Path, tmp_path: Path) -> None:
    out = tmp_path / "units"
    result = cli("--config", str(config), "schedule", "install", "--systemd", "--out-dir",
                 str(out), "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    expected_names = {f"emrops-{j}.{kind}" for j in JOBS for kind in ("service", "timer")}
    expected_names |= {"emrops-scheduler.service", "emrops-sim.service"}
    assert set(files) == expected_names
    assert {p.name for p in out.iterdir()} == expected_names
    for job, expression in JOBS.items():
        service = _ini(files[f"emrops-{job}.service"])
        assert service["Service"]["Type"] == "oneshot"
        assert service["Service"]["WorkingDirectory"] == str(config.parent)
        assert service["Service"]["SuccessExitStatus"] == "75"
        _check_command(
            shlex.split(service["Service"]["ExecStart"]), config, ["schedule", "run-job", job]
        )
        timer = _ini(files[f"emrops-{job}.timer"])
        schedule = cron.parse(expression)
        assert schedule is not None
        assert timer["Timer"]["OnCalendar"] == schedule.on_calendar()
        assert timer["Timer"]["Persistent"] == "true"
        assert timer["Timer"]["Unit"] == f"emrops-{job}.service"
        assert timer["Install"]["WantedBy"] == "timers.target"
    daemon = _ini(files["emrops-scheduler.service"])
    _check_command(shlex.split(daemon["Service"]["ExecStart"]), config, ["schedule", "run"])
    assert daemon["Service"]["KillSignal"] == "SIGTERM"
    sim = _ini(files["emrops-sim.service"])
    _check_command(shlex.split(sim["Service"]["ExecStart"]), config, ["sim", "serve"])
    assert _ini(files["emrops-drill.timer"])["Timer"]["OnCalendar"] == "Sun *-*-* 04:00:00 UTC"
    if shutil.which("systemd-analyze"):
        units = [str(out / name) for name in sorted(expected_names)]
        check = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", *units], capture_output=True, text=True
        )
        problems = [
            line for line in check.stderr.splitlines()
            if "emrops-" in line and "Failed to" not in line.split(":", 1)[0]
        ]  # fmt: skip
        assert check.returncode == 0, check.stderr
        assert problems == [], check.stderr


def test_systemd_printed_with_headers(cli, config: Path) -> None:
    result = cli("--config", str(config), "schedule", "install", "--systemd", "--user", "emrops")
    assert result.exit_code == 0, result.stderr
    assert "# ---- emrops-backup.timer ----" in result.stdout
    assert result.stdout.count("User=emrops") == 6


def _as_cron_runs_it(field: str) -> str:
    """What cron hands to /bin/sh: up to the first bare %, with \\% turned into %."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 2] == "%":
            out.append("%")
            i += 2
            continue
        if field[i] == "%":
            break
        out.append(field[i])
        i += 1
    return "".join(out)


def _systemd_unescape(value: str) -> str:
    return value.replace("%%", "%").replace("$$", "$")


def test_percent_and_dollar_are_escaped_in_cron_and_systemd(cli, tmp_path: Path) -> None:
    folder = tmp_path / "50%off $HOME"
    folder.mkdir()
    config = write_config(folder, **{"": {"db_url": "sqlite:///var/emrsim.db"}, "schedule": JOBS})
    result = cli("--config", str(config), "schedule", "install", "--cron")
    assert result.exit_code == 0, result.stderr
    entries = [ln for ln in result.stdout.splitlines() if ln[:1].isdigit()]
    for entry, job in zip(entries, JOBS, strict=True):
        field = entry.split(maxsplit=5)[5]
        assert "\\%" in field and "%" not in field.replace("\\%", "")
        words = shlex.split(_as_cron_runs_it(field))
        assert words[:3] == ["cd", str(folder), "&&"]
        _check_command(words[3 : words.index(">>")], config, ["schedule", "run-job", job])
    out = tmp_path / "units"
    result = cli("--config", str(config), "schedule", "install", "--systemd", "--out-dir",
                 str(out), "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    service = _ini(files["emrops-backup.service"])["Service"]
    assert service["WorkingDirectory"] == str(folder).replace("%", "%%")
    exec_start = service["ExecStart"]
    assert "50%%off $$HOME" in exec_start
    words = shlex.split(_systemd_unescape(exec_start))
    _check_command(words, config, ["schedule", "run-job", "backup"])
    if shutil.which("systemd-analyze"):
        check = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(out / "emrops-backup.service")],
            capture_output=True,
            text=True,
        )
        assert "specifier" not in check.stderr.lower(), check.stderr
