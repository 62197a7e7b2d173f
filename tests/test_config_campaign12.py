"""Hostile configuration: typos, blank and padded environment variables, passwords with URL
delimiters in them, and values that are rich markup or terminal escapes."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emrops import secrets
from emrops.config import load_settings
from emrops.errors import ConfigError


def test_typos_in_the_file_are_named_with_a_suggestion(tmp_path: Path) -> None:
    cfg = tmp_path / "emrops.toml"
    cfg.write_text('stat_dir = "s"\n[shedule]\nbackup = "0 1 * * *"\n[sim]\nprot = 1\nzzz = 2\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.message == (
        f"unknown settings in {cfg}: shedule.backup (did you mean schedule.backup?), "
        "sim.prot (did you mean sim.port?), sim.zzz, stat_dir (did you mean state_dir?)"
    )
    # the hint lists what the first unknown key's table takes (no secrets: they are env-only)
    assert err.value.hint == (
        "tables emrops knows: [azure], [backup], [deploy], [health], [provision], [schedule], [sim]"
    )
    cfg.write_text("[sim]\nprot = 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.hint == "fix the spelling; settings in [sim]: host, max_body, port, url"


@pytest.mark.parametrize("blank", [" ", "\t", " \n"])
def test_a_blank_environment_variable_counts_as_unset(tmp_path: Path, blank: str) -> None:
    # EMROPS_STATE_DIR=" " made a folder named " " in the working directory
    s = load_settings(env={"EMROPS_STATE_DIR": blank, "EMROPS_SIM_PORT": blank})
    assert s.state_dir == tmp_path / ".emrops" and s.sources["state_dir"] == "default"
    assert s.get("sim.port") == 8000


def test_padding_around_environment_values_is_dropped_except_from_secrets(
    tmp_path: Path,
) -> None:
    env = {
        "EMROPS_BACKUP_STORE": f" {tmp_path}/store \n",
        "EMROPS_DB_URL": " sqlite:///var/x.db ",
        "EMROPS_LOG_FORMAT": "json ",
        "EMROPS_SIM_TOKEN": " tok en ",
    }
    s = load_settings(env=env)
    assert s.get("backup.store") == f"{tmp_path}/store"
    assert s.db_url == f"sqlite:///{tmp_path / 'var' / 'x.db'}"  # resolved like any relative
    assert s.get("log_format") == "json"
    assert s.get("sim.token") == " tok en "


@pytest.mark.parametrize(
    ("url", "leak"),
    [
        ("postgresql://app:p@ss-tail9@db.example/emrsim", "ss-tail9"),
        ("postgresql://app@srv:azure-pw-77@srv.postgres.database.azure.com/e", "azure-pw-77"),
        ("postgresql://app:a/b:c%d@s-e@db/emrsim?sslmode=require", "s-e"),
    ],
)
def test_passwords_holding_url_delimiters_are_masked_whole(url: str, leak: str) -> None:
    # the password ended the mask at its first "@": postgresql://app:***@ss-tail9@db...
    masked = secrets.mask(url)
    assert leak not in masked and "***@" in masked
    assert secrets.url_has_password(url)
    # inside JSON the mask stops at the quote: the document stays JSON
    doc = json.dumps({"url": url, "mail": "ops@example.org"})
    assert json.loads(secrets.mask(doc))["mail"] == "ops@example.org"


def test_a_raw_at_in_the_db_password_is_refused_not_half_parsed(cli) -> None:
    # SQLAlchemy reads postgresql://app:p@ss@db as password "p", host "ss@db": the connection
    # error then printed the password's tail as a host name
    result = cli("config", "show", env={"EMROPS_DB_URL": "postgresql://app:p@ss-x1@db/emrsim"})
    assert result.exit_code == 2, result.stderr  # ConfigError: a usage error
    assert "db_url (from env EMROPS_DB_URL) has an unescaped '@' in its password" in result.stderr
    assert "@ as %40" in result.stderr and "ss-x1" not in result.stderr + result.stdout
    ok = cli("config", "show", "--json", env={"EMROPS_DB_URL": "postgresql://app:p%40ss@db/e"})
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["settings"]["db_url"]["value"] == "postgresql://app:***@db/e"
    azure = cli("config", "show", env={"EMROPS_DB_URL": "postgresql://app@srv@db/e"})
    assert azure.exit_code == 0, azure.stderr  # a user "app@srv" without a password is fine


def test_config_show_on_a_terminal_prints_markup_and_escapes_inert(tmp_path: Path) -> None:
    # rich read the value as markup: "unexpected MarkupError"; ESC reached the terminal
    (tmp_path / "emrops.toml").write_text('[sim]\nhost = "[/x] \\u001b[2J \\u202eevil"\n')
    master, slave = pty.openpty()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CI", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "emrops", "config", "show"],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**env, "COLUMNS": "200"},
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
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
    assert proc.wait(timeout=10) == 0, out
    text = out.decode("utf-8", "replace")
    assert "[/x] \\x1b[2J \\u202eevil" in text
    assert "\x1b[2J" not in text and "\u202e" not in text


def test_a_password_in_the_db_url_query_string_is_refused_in_the_file(tmp_path: Path) -> None:
    # the rule "a db_url with a password in it is refused" only looked at user:password@
    cfg = tmp_path / "emrops.toml"
    for url in (
        "postgresql://app@db/emrsim?sslmode=require&password=hunter2",
        "postgresql://app@db/emrsim?PASSWORD=hunter2",
        "postgresql://app@db/emrsim?sslpassword=keypass",
    ):
        cfg.write_text(f'db_url = "{url}"\n')
        with pytest.raises(ConfigError) as err:
            load_settings(cfg, env={})
        assert err.value.message == f"db_url in {cfg} contains a password"
        assert "hunter2" not in err.value.message
    cfg.write_text('db_url = "postgresql://app@db/emrsim?sslmode=require&password="\n')
    assert load_settings(cfg, env={}).db_url.endswith("password=")  # empty: nothing secret


def test_a_config_path_that_is_a_folder_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, env={})
    assert err.value.message == f"config file {tmp_path} is a folder"
    assert err.value.hint == f"use --config {tmp_path / 'emrops.toml'}"
    with pytest.raises(ConfigError) as err:
        load_settings(env={"EMROPS_CONFIG": str(tmp_path)})
    assert err.value.message == f"config file {tmp_path} (from EMROPS_CONFIG) is a folder"


@pytest.mark.parametrize(
    "env",
    [
        {"EMROPS_DB_URL": "postgresql://app@db/emrsim", "EMROPS_DB_PASSWORD": "p@ss:w/o%rd 1x"},
        {"EMROPS_DB_URL": "postgresql://app:spaced pass-2y@db/emrsim"},
    ],
)
def test_a_db_password_with_a_space_is_masked_in_config_show(cli, env: dict) -> None:
    # `config show` printed postgresql://app:p%40ss%3Aw%2Fo%25rd 1x@db/emrsim: the password
    # is injected percent-encoded and the URL pattern stopped at the space
    for args in (["config", "show"], ["config", "show", "--json"]):
        result = cli(*args, env=env)
        assert result.exit_code == 0, result.stderr
        shown = result.stdout + result.stderr
        for leak in ("1x", "2y", "%40ss", "spaced"):
            assert leak not in shown, (args, leak)
        assert "postgresql://app:***@db/emrsim" in shown


def test_an_unknown_log_level_is_refused_not_read_as_info(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env={"EMROPS_LOG_LEVEL": "loud"})
    assert err.value.message == "invalid log_level 'loud' (from env EMROPS_LOG_LEVEL)"
    assert err.value.hint == "use one of debug, info, warning, error"
    assert load_settings(env={"EMROPS_LOG_LEVEL": "WARNING"}).get("log_level") == "WARNING"


def test_a_password_equal_to_the_user_name_does_not_mask_the_user(cli) -> None:
    # registering every URL password masked it everywhere: "***ql://***:***@db/***"
    env = {"EMROPS_DB_URL": "postgresql://opsuser7:opsuser7@db/opsuser7"}
    result = cli("config", "show", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    shown = json.loads(result.stdout)["settings"]["db_url"]["value"]
    assert shown == "postgresql://opsuser7:***@db/opsuser7"
