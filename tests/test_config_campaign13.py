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


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    # Notepad's UTF-8 BOM: "not valid TOML: Invalid statement (at line 1, column 1)"
    from emrops.config import load_settings

    cfg = tmp_path / "emrops.toml"
    cfg.write_bytes(b'\xef\xbb\xbfdb_url = "sqlite:///x.db"\r\n[sim]\r\nport = 8123\r\n')
    settings = load_settings(cfg, env={})
    assert settings.db_url == f"sqlite:///{tmp_path / 'x.db'}"
    assert settings.get("sim.port") == 8123


def test_a_huge_config_file_is_refused_at_once(tmp_path: Path) -> None:
    # a 50 MB file took 5 s and 130 MB of memory before every command
    cfg = tmp_path / "emrops.toml"
    with cfg.open("wb") as handle:
        handle.write(b"# comment\n" * (5 * 1024 * 1024))
    result = emrops(tmp_path, "--config", str(cfg), "config", "show")
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        f"Error: config file {cfg} is larger than 1 MB: not an emrops config"
    )


def test_variables_in_paths_are_expanded_and_an_unset_one_is_named(tmp_path: Path) -> None:
    # state_dir = "$HOME/x" made a folder literally named "$HOME" beside the file
    from emrops.config import load_settings
    from emrops.errors import ConfigError

    cfg = tmp_path / "emrops.toml"
    cfg.write_text('state_dir = "$DATA/state"\n[backup]\nstore = "${DATA}/b"\n')
    env = {"DATA": str(tmp_path / "data"), "EMROPS_DB_URL": "sqlite:///$DATA/e.db"}
    settings = load_settings(cfg, env=env)
    assert settings.state_dir == tmp_path / "data" / "state"
    assert settings.get("backup.store") == str(tmp_path / "data" / "b")
    assert settings.db_url == f"sqlite:///{tmp_path / 'data' / 'e.db'}"
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.message == f"state_dir (from {cfg}) uses $DATA, which is not set"
    # a password holding "$" is not a variable
    url = "postgresql+psycopg://u:pa$word@127.0.0.1/db"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_settings(empty, env={"EMROPS_DB_URL": url}).db_url == url


def test_a_line_break_in_a_setting_is_refused_naming_it(tmp_path: Path) -> None:
    from emrops.config import load_settings
    from emrops.errors import ConfigError

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with pytest.raises(ConfigError) as err:
        load_settings(empty, env={"EMROPS_SIM_URL": "http://x\nEvil: 1"})
    assert err.value.message == (
        "sim.url (from EMROPS_SIM_URL) holds a control character ('\\n') at position 8"
    )


def test_symbolic_link_loops_are_named(tmp_path: Path) -> None:
    # --config LOOP said "not found"; a state_dir under a loop listed no runs, silently
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    result = emrops(tmp_path, "--config", "a", "config", "show")
    assert result.returncode == 2
    assert "Error: config file not found: a (a symbolic link loop)" in result.stderr
    _config(tmp_path, 'state_dir = "a/state"')
    listed = emrops(tmp_path, "checklist", "status")
    assert listed.returncode == 2
    assert f"Error: state_dir {tmp_path}/a/state: {tmp_path}/a is a symbolic link loop" in (
        listed.stderr
    )


def test_an_empty_config_option_is_refused_not_ignored(project: Path) -> None:
    # `emrops --config "$CONFIG" ...` with CONFIG unset used ./emrops.toml without a word
    _config(project, 'log_level = "error"')
    result = emrops(project, "--config", "", "config", "show")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "Error: --config is empty",
        "Try: give the config file's path, or leave --config out",
    ]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ('db_url = "a"\ndb_url = "b"\n', "a key is set twice: keep one of the two lines"),
        ("[sim]\nport = 1\n[sim]\nhost = 'x'\n",
         "a [table] is written twice (or a key above already set it): merge them"),
        ("db_url = sqlite\n", 'text values need quotes: db_url = "sqlite:///var/emrsim.db"'),
        ('db_url = "sqlite\n', "a string is not closed before the end of the line"),
    ],
)  # fmt: skip
def test_toml_mistakes_get_a_hint_saying_what_they_are(
    tmp_path: Path, text: str, hint: str
) -> None:
    # every one of them said "Try: fix the syntax"
    from emrops.config import load_settings
    from emrops.errors import ConfigError

    cfg = tmp_path / "emrops.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.message.startswith(f"config file {cfg} is not valid TOML: ")
    assert err.value.hint == hint
