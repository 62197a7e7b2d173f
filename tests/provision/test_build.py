"""provision build: the bicep CLI as a process (a stand-in script here), never pretended."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.provision.conftest import FIXTURES


@pytest.fixture
def no_bicep(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A PATH with the shell tools the stand-in needs, but without any bicep."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "cat", "dirname"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_missing_bicep_is_a_clear_error(cli, no_bicep):
    result = cli("provision", "build")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "Error: the bicep CLI is not installed"
    assert lines[1].startswith("Try: install the Bicep CLI (`az bicep install` puts it in ")
    assert "EMROPS_BICEP" in lines[1]
    assert not Path(".emrops/build/main.json").exists()


def test_build_runs_bicep_from_path(cli, monkeypatch):
    monkeypatch.setenv("PATH", f"{FIXTURES}{os.pathsep}{os.environ['PATH']}")
    result = cli("provision", "build", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["bicep"] == str(FIXTURES / "bicep")
    out = Path(data["output"])
    assert out == Path.cwd() / ".emrops" / "build" / "main.json"
    assert json.loads(out.read_text()) == json.loads((FIXTURES / "main.json").read_text())
    assert data["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert data["resources"] == len(json.loads((FIXTURES / "main.json").read_text())["resources"])
    assert data["source"].endswith("templates/bicep/main.bicep")


def test_build_uses_emrops_bicep(cli, monkeypatch, no_bicep, tmp_path):
    custom = tmp_path / "tools" / "my-bicep"
    custom.parent.mkdir()
    shutil.copy(FIXTURES / "bicep", custom)
    monkeypatch.setenv("EMROPS_BICEP", str(custom))
    monkeypatch.setenv("EMROPS_FAKE_BICEP_TEMPLATE", str(FIXTURES / "main.json"))
    result = cli("provision", "build", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["bicep"] == str(custom)


def test_build_finds_bicep_in_azure_bin(cli, monkeypatch, no_bicep, tmp_path):
    home = tmp_path / "home"
    (home / ".azure" / "bin").mkdir(parents=True)
    shutil.copy(FIXTURES / "bicep", home / ".azure" / "bin" / "bicep")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EMROPS_FAKE_BICEP_TEMPLATE", str(FIXTURES / "main.json"))
    result = cli("provision", "build", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["bicep"] == str(home / ".azure" / "bin" / "bicep")


def test_bicep_error_is_shown(cli, monkeypatch):
    monkeypatch.setenv("PATH", f"{FIXTURES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EMROPS_FAKE_BICEP_FAIL", 'Expected the "=" character at this location.')
    result = cli("provision", "build")
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: bicep build failed: ")
    assert "main.bicep(1,1) : Error BCP007: Expected the" in result.stderr


def test_emrops_bicep_pointing_nowhere(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EMROPS_BICEP", str(tmp_path / "nope"))
    result = cli("provision", "build")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"Error: bicep not found at {tmp_path / 'nope'} (EMROPS_BICEP)"
    )


def test_output_that_is_not_arm_json_is_refused(cli, monkeypatch, tmp_path):
    bogus = tmp_path / "bogus.json"
    bogus.write_text('{"hello": "world"}')
    monkeypatch.setenv("PATH", f"{FIXTURES}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("EMROPS_FAKE_BICEP_TEMPLATE", str(bogus))
    result = cli("provision", "build")
    assert result.exit_code == 2
    assert "is not an ARM template (no $schema/resources)" in result.stderr
