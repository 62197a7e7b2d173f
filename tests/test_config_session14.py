"""Session 14: configuration. A recipient list keeps its line breaks (CRLF too) while other
settings refuse them; ``~nosuchuser`` in any path setting is a usage error naming the setting
(was "unexpected RuntimeError")."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrops.config import load_settings
from emrops.errors import ConfigError, UsageError

ONE = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"


def _empty(tmp_path: Path) -> Path:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    return empty


def test_a_recipient_list_keeps_its_line_breaks(tmp_path: Path) -> None:
    listed = f"# ops\r\n{ONE}\r\n\n{ONE}\n"
    cfg = load_settings(_empty(tmp_path), env={"EMROPS_BACKUP_RECIPIENT": listed})
    assert cfg.get("backup.recipient").splitlines()[1] == ONE
    (tmp_path / "file.toml").write_text(f'[backup]\nrecipient = """\n{ONE}\n{ONE}\n"""\n')
    assert load_settings(tmp_path / "file.toml", env={}).get("backup.recipient").count(ONE) == 2


def test_a_nul_in_a_recipient_list_is_still_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_empty(tmp_path), env={"EMROPS_BACKUP_RECIPIENT": f"{ONE}\x00"})
    assert "control character ('\\x00')" in err.value.message


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("EMROPS_STATE_DIR", "state_dir"),
        ("EMROPS_BACKUP_STORE", "backup.store"),
        ("EMROPS_DB_URL", "db_url"),
    ],
)
def test_an_unknown_user_in_a_path_setting_is_named(
    tmp_path: Path, variable: str, setting: str
) -> None:
    value = "~nosuchuser-emrops/x"
    if variable == "EMROPS_DB_URL":
        value = "sqlite:///" + value
    with pytest.raises(ConfigError) as err:
        load_settings(_empty(tmp_path), env={variable: value})
    assert err.value.message.startswith(f"{setting} (from {variable}): cannot expand")
    assert "'~nosuchuser-emrops'" in err.value.message


def test_an_unknown_user_in_the_config_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        load_settings("~nosuchuser-emrops/emrops.toml", env={})
    assert "cannot expand '~nosuchuser-emrops'" in err.value.message
