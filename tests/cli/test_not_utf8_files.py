"""Files that are not UTF-8 text (saved in Latin-1 or UTF-16 by an editor, or damaged) given to
commands that read them: a clear error naming the file, never "unexpected UnicodeDecodeError"
(before: the config file, for every command, and `benchmark compare`'s result files)."""

from __future__ import annotations

import json
from pathlib import Path

NOT_UTF8 = b'db_url = "sqlite:///x.db"\n# caf\xe9\n'  # Latin-1


def test_config_file_that_is_not_utf8(cli, tmp_path: Path) -> None:
    config = tmp_path / "emrops.toml"
    config.write_bytes(NOT_UTF8)
    for args in (("--config", str(config), "config", "show"), ("config", "show")):
        result = cli(*args)  # given, and found in the working directory
        assert result.exit_code != 0
        assert "unexpected" not in result.stderr
        assert f"config file {config} is not UTF-8 text" in result.stderr, result.stderr
        assert "save it as UTF-8" in result.stderr


def test_benchmark_compare_file_that_is_not_utf8(cli, tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes("\ufeff{}".encode("utf-16"))
    result = cli("benchmark", "compare", "a.json", "a.json")
    assert result.exit_code == 2
    assert "unexpected" not in result.stderr
    assert "a.json is not UTF-8 text" in result.stderr


def test_provision_outputs_that_are_damaged(cli, tmp_path: Path, monkeypatch) -> None:
    state = tmp_path / "state"
    monkeypatch.setenv("EMROPS_STATE_DIR", str(state))
    outputs = state / "outputs" / "staging.json"
    outputs.parent.mkdir(parents=True)
    for content, expected in (
        (b"\xff\xfe", "is unreadable: 'utf-8' codec can't decode"),
        (json.dumps([1]).encode(), "is not an emrops outputs file"),
    ):
        outputs.write_bytes(content)
        result = cli("provision", "outputs", "--env", "staging")
        assert result.exit_code == 1, result.stderr
        assert "unexpected" not in result.stderr
        assert f"{outputs}" in result.stderr and expected in result.stderr, result.stderr
