"""Session 13: configuration. log_level and log_format from emrops.toml are applied with the
documented precedence (flag > EMROPS_* > file > default)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.conftest import init_db


def emrops(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    return subprocess.run(
        [sys.executable, "-m", "emrops", *args],
        capture_output=True, text=True, cwd=cwd, env={**base, **env}, timeout=60,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    init_db(f"sqlite:///{tmp_path / 'emrsim.db'}")
    return tmp_path


def _config(folder: Path, extra: str) -> None:
    (folder / "emrops.toml").write_text(f'db_url = "sqlite:///emrsim.db"\n{extra}\n')


def test_log_level_in_the_file_is_applied(project: Path) -> None:
    # log_level was validated but never applied: `log_level = "error"` still logged INFO
    _config(project, 'log_level = "error"')
    quiet = emrops(project, "backup", "run")
    assert quiet.returncode == 0, quiet.stderr
    assert " INFO " not in quiet.stderr
    # the environment wins over the file, --debug over both
    loud = emrops(project, "backup", "run", EMROPS_LOG_LEVEL="info")
    assert " INFO    backup " in loud.stderr
    _config(project, 'log_level = "warning"')
    assert " INFO " not in emrops(project, "backup", "run").stderr
    assert " INFO " in emrops(project, "--debug", "backup", "run").stderr


def test_log_format_in_the_file_is_applied_and_the_flag_wins(project: Path) -> None:
    _config(project, 'log_format = "json"')
    result = emrops(project, "backup", "run")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert any(entry["msg"].startswith("backup ") for entry in lines if "msg" in entry)
    text = emrops(project, "--log-format", "text", "backup", "run")
    assert " INFO    backup " in text.stderr
