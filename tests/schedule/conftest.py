"""Fixtures for scheduled jobs: a config file, real SQLite databases, scheduler processes.

A scheduler is a real ``python -m emrops schedule run`` process with second-level cron
schedules; every process started here is stopped (SIGTERM, then SIGKILL) at teardown.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.sim.conftest import init_db, wait_for

__all__ = ["init_db", "wait_for"]


def write_config(folder: Path, **sections: dict[str, Any]) -> Path:
    """emrops.toml in ``folder``: top-level keys under "" and [section] tables."""
    lines: list[str] = []
    for key, value in sections.pop("", {}).items():
        lines.append(f"{key} = {json.dumps(value)}")
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path = folder / "emrops.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


OFF = {"backup": "off", "verify": "off", "rotate": "off", "drill": "off"}


@dataclass
class Scheduler:
    proc: subprocess.Popen[bytes]
    log_path: Path
    status_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def status(self, job: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.status_dir / f"{job}.json").read_text())
        except (OSError, ValueError):
            return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                pytest.fail(f"scheduler ignored {sig}:\n{self.log()}")
        return int(self.proc.returncode)


@pytest.fixture
def start_scheduler(tmp_path: Path) -> Iterator[Callable[..., Scheduler]]:
    started: list[Scheduler] = []

    def start(config: Path, *args: str, name: str = "scheduler") -> Scheduler:
        log_path = tmp_path / f"{name}.log"
        command = [sys.executable, "-m", "emrops", "--config", str(config), "--log-format",
                   "json", "schedule", "run", *args]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=config.parent
            )
        scheduler = Scheduler(proc, log_path, config.parent / ".emrops" / "status")
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        if scheduler.proc.poll() is None:
            scheduler.proc.kill()
            scheduler.proc.wait(5)
