"""``emrops schedule install``: crontab lines or systemd service + timer units.

Everything printed uses absolute paths (the emrops executable, ``--config``, the working
folder), because cron starts jobs with an almost empty environment and systemd with none of
the user's. The one-shot command each entry calls is ``emrops schedule run-job JOB``: the same
core call as the ``emrops backup`` command, plus the tick claim and the status files.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from emrops.errors import UsageError
from emrops.schedule.cron import Schedule
from emrops.schedule.jobs import DESCRIPTIONS

BUSY_EXIT = 75  # the store lock was held: the run was skipped, not failed


def emrops_executable() -> list[str]:
    """The absolute command that starts this emrops (the console script beside the Python)."""
    beside = Path(sys.executable).parent / "emrops"
    if beside.is_file():
        return [str(beside.absolute())]
    found = shutil.which("emrops")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "emrops"]


@dataclass
class Target:
    """Where the installed entries run: executable, config file, working folder, log folder."""

    command: list[str]
    config_file: Path | None
    workdir: Path
    log_dir: Path

    def emrops(self, *args: str) -> str:
        words = [*self.command]
        if self.config_file is not None:
            words += ["--config", str(self.config_file)]
        words += ["--log-format", "json", *args]
        return shlex.join(words)


def cron_escape(command: str) -> str:
    """Escape ``%`` for a crontab command field: cron turns a bare ``%`` into a newline (and
    feeds the rest to stdin), ``\\%`` into ``%``."""
    return command.replace("%", "\\%")


def systemd_escape(value: str, *, command: bool = False) -> str:
    """Escape a value for a unit file: ``%`` starts a specifier (``%%`` is a percent sign) and,
    in Exec lines, ``$`` an environment variable (``$$`` is a dollar sign)."""
    value = value.replace("%", "%%")
    return value.replace("$", "$$") if command else value


def _no_newline(*values: object) -> None:
    for value in values:
        if "\n" in str(value) or "\r" in str(value):
            raise UsageError(
                f"{str(value)!r} holds a line break, which no crontab or unit file can carry",
                hint="use a path without line breaks",
            )


def crontab(target: Target, jobs: dict[str, Schedule]) -> str:
    """Crontab lines (UTC) calling the one-shot job command, output appended to a log file."""
    lines = [
        "# emrops scheduled jobs (times in UTC). Install with `crontab -e` or into /etc/cron.d",
        "# (add the user name as the 6th field there). Exit 75: skipped, the store was locked.",
        "# cronie honours CRON_TZ; with Debian's cron, run the host in UTC.",
        "CRON_TZ=UTC",
        "SHELL=/bin/sh",
    ]
    _no_newline(*target.command, target.config_file, target.workdir, target.log_dir)
    for name, schedule in jobs.items():
        log_file = shlex.quote(str(target.log_dir / f"schedule-{name}.log"))
        lines.append(f"# {name}: {DESCRIPTIONS[name]}")
        command = (
            f"cd {shlex.quote(str(target.workdir))} && "
            f"{target.emrops('schedule', 'run-job', name)} >> {log_file} 2>&1"
        )
        lines.append(f"{schedule.crontab} {cron_escape(command)}")
    return "\n".join(lines) + "\n"


def _exec(target: Target, *args: str) -> str:
    return systemd_escape(target.emrops(*args), command=True)


def systemd_units(
    target: Target, jobs: dict[str, Schedule], user: str | None = None
) -> dict[str, str]:
    """Unit file name -> content: a oneshot service + timer per job, and two daemon services."""
    _no_newline(*target.command, target.config_file, target.workdir, target.log_dir, user or "")
    user_line = f"User={systemd_escape(user)}\n" if user else ""
    workdir = systemd_escape(str(target.workdir))
    units: dict[str, str] = {}
    for name, schedule in jobs.items():
        units[f"emrops-{name}.service"] = (
            "[Unit]\n"
            f"Description=emrops {name}: {DESCRIPTIONS[name]}\n"
            "Wants=network-online.target\n"
            "After=network-online.target\n"
            "\n"
            "[Service]\n"
            "Type=oneshot\n"
            f"{user_line}"
            f"WorkingDirectory={workdir}\n"
            f"ExecStart={_exec(target, 'schedule', 'run-job', name)}\n"
            f"SuccessExitStatus={BUSY_EXIT}\n"
        )
        units[f"emrops-{name}.timer"] = (
            "[Unit]\n"
            f"Description=emrops {name} on '{systemd_escape(schedule.expression)}' (UTC)\n"
            "\n"
            "[Timer]\n"
            f"OnCalendar={schedule.on_calendar()}\n"
            "Persistent=true\n"
            f"Unit=emrops-{name}.service\n"
            "\n"
            "[Install]\n"
            "WantedBy=timers.target\n"
        )
    units["emrops-scheduler.service"] = (
        "[Unit]\n"
        "Description=emrops scheduler (all jobs in one process; use it OR the timers)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"{user_line}"
        f"WorkingDirectory={workdir}\n"
        f"ExecStart={_exec(target, 'schedule', 'run')}\n"
        "KillSignal=SIGTERM\n"
        "TimeoutStopSec=1h\n"
        "Restart=on-failure\n"
        "RestartSec=30s\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    units["emrops-sim.service"] = (
        "[Unit]\n"
        "Description=EMRsim simulation server (emrops sim serve)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "\n"
        "[Service]\n"
        "Type=simple\n"
        f"{user_line}"
        f"WorkingDirectory={workdir}\n"
        f"ExecStart={_exec(target, 'sim', 'serve')}\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
        "KillSignal=SIGTERM\n"
        "Restart=on-failure\n"
        "RestartSec=5s\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )
    return units
