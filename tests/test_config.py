"""Config precedence (flag > env > file > default), path resolution and masking."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from emrops.config import load_settings
from emrops.errors import ConfigError


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_without_config_use_working_directory(tmp_path: Path) -> None:
    s = load_settings(env={})
    assert s.config_file is None
    assert s.db_url == f"sqlite:///{tmp_path / 'var' / 'emrsim.db'}"
    assert s.state_dir == tmp_path / ".emrops"
    assert s.sources["db_url"] == "default"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "etc" / "emrops.toml", 'log_level = "warning"\n[sim]\nport = 9001\n'
    )
    env = {"EMROPS_SIM_PORT": "9002"}
    assert load_settings(cfg, env={}).get("sim.port") == 9001
    s = load_settings(cfg, env=env)
    assert s.get("sim.port") == 9002 and s.sources["sim.port"] == "env EMROPS_SIM_PORT"
    s = load_settings(cfg, flags={"sim.port": 9003}, env=env)
    assert s.get("sim.port") == 9003 and s.sources["sim.port"] == "flag"
    assert s.get("log_level") == "warning" and s.sources["log_level"].startswith("file ")
    assert s.get("sim.host") == "127.0.0.1" and s.sources["sim.host"] == "default"


def test_relative_paths_in_file_resolve_against_its_folder(tmp_path: Path, monkeypatch) -> None:
    cfg = write_config(
        tmp_path / "conf" / "emrops.toml",
        'db_url = "sqlite:///data/app.db"\nstate_dir = "state"\n[backup]\nstore = "bk"\n',
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    s = load_settings(cfg, env={})
    assert s.db_url == f"sqlite:///{tmp_path / 'conf' / 'data' / 'app.db'}"
    assert s.state_dir == tmp_path / "conf" / "state"
    assert s.get("backup.store") == str(tmp_path / "conf" / "bk")
    # the default database sits beside the config file too
    cfg2 = write_config(tmp_path / "c2" / "emrops.toml", "")
    assert (
        load_settings(cfg2, env={}).db_url == f"sqlite:///{tmp_path / 'c2' / 'var' / 'emrsim.db'}"
    )


def test_flag_paths_resolve_against_working_directory(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "conf" / "emrops.toml", "")
    s = load_settings(cfg, flags={"backup.store": "here"}, env={})
    assert s.get("backup.store") == str(tmp_path / "here")
    assert load_settings(cfg, flags={"backup.store": "azure://c/p"}, env={}).get(
        "backup.store"
    ) == ("azure://c/p")


def test_search_order_explicit_env_cwd_user_dir(tmp_path: Path, monkeypatch) -> None:
    user = write_config(tmp_path / "xdg-config" / "emrops" / "emrops.toml", "[sim]\nport = 1\n")
    assert load_settings(env={}).config_file == user
    cwd_file = write_config(tmp_path / "emrops.toml", "[sim]\nport = 2\n")
    assert load_settings(env={}).config_file == cwd_file
    env_file = write_config(tmp_path / "env" / "emrops.toml", "[sim]\nport = 3\n")
    assert load_settings(env={"EMROPS_CONFIG": str(env_file)}).get("sim.port") == 3
    explicit = write_config(tmp_path / "x" / "emrops.toml", "[sim]\nport = 4\n")
    assert load_settings(explicit, env={"EMROPS_CONFIG": str(env_file)}).get("sim.port") == 4


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", env={})
    with pytest.raises(ConfigError, match="from EMROPS_CONFIG"):
        load_settings(env={"EMROPS_CONFIG": str(tmp_path / "nope.toml")})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sim\nport = 1", "is not valid TOML"),
        ("[sim]\nprot = 1\n", "unknown setting in"),
        ('[sim]\nport = "eighty"\n', "invalid value 'eighty' for sim.port"),
        ('[sim]\ntoken = "s3cret-token"\n', "sim.token must not be stored in"),
        ('db_url = "postgresql://app:hunter22@db/emrsim"\n', "contains a password"),
        ('log_format = "xml"\n', "invalid log_format"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    cfg = write_config(tmp_path / "emrops.toml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_settings(cfg, env={})
    assert "hunter22" not in str(info.value) and "s3cret-token" not in str(info.value)


def test_password_comes_from_env_and_is_masked(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "emrops.toml", 'db_url = "postgresql://app@db.example:5432/emrsim"\n'
    )
    s = load_settings(cfg, env={"EMROPS_DB_PASSWORD": "hunter22-secret"})
    assert "hunter22-secret" in s.db_url  # injected for the driver
    shown = json.dumps(s.masked())
    assert "hunter22-secret" not in shown
    assert "postgresql://app:***@db.example:5432/emrsim" in shown
    assert s.masked()["db_password"] == {"value": "***", "source": "env EMROPS_DB_PASSWORD"}


def test_config_show_cli_masks_and_reports_sources(cli, tmp_path: Path) -> None:
    write_config(tmp_path / "emrops.toml", "[sim]\nport = 8123\n")
    env = {
        "EMROPS_DB_URL": "postgresql://ops:pa55word-xyz@127.0.0.1/emrsim",
        "EMROPS_SIM_TOKEN": "tok-abcdef",
    }
    result = cli("config", "show", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config_file"] == str(tmp_path / "emrops.toml")
    assert data["settings"]["sim.port"] == {
        "value": 8123,
        "source": f"file {tmp_path / 'emrops.toml'}",
    }
    assert data["settings"]["db_url"]["value"] == "postgresql://ops:***@127.0.0.1/emrsim"
    assert data["settings"]["sim.token"]["value"] == "***"
    assert "pa55word-xyz" not in result.stdout and "tok-abcdef" not in result.stdout
    table = cli("config", "show", env=env)
    assert table.exit_code == 0
    assert "sim.port" in table.stdout and "pa55word-xyz" not in table.stdout


def test_a_state_dir_that_is_a_file_is_a_config_error(tmp_path: Path, cli) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad in (a_file, a_file / "deeper"):
        settings = load_settings(env={"EMROPS_STATE_DIR": str(bad)})
        with pytest.raises(ConfigError, match="is a file, not a folder"):
            _ = settings.state_dir
    # through a command that keeps state: exit 2 with the hint, not an unexpected error
    source = tmp_path / "app.db"
    sqlite3.connect(source).close()
    result = cli(
        "migrate-db", "run", "--from", f"sqlite:///{source}",
        "--to", "postgresql+psycopg://postgres@127.0.0.1:1/none",
        env={"EMROPS_STATE_DIR": str(a_file)},
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert "state_dir" in result.stderr and "unexpected" not in result.stderr
