"""provision render: parameters file from environments/<env>.toml, secrets never written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emrops.resources import templates_dir
from tests.provision.conftest import PASSWORD

BUNDLED = templates_dir() / "bicep"


@pytest.fixture
def bicep_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the bundled Bicep folder, used through provision.templates."""
    folder = tmp_path / "bicep"
    shutil.copytree(BUNDLED, folder)
    monkeypatch.setenv("EMROPS_PROVISION_TEMPLATES", str(folder))
    return folder


def test_render_writes_parameters_without_secrets(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("EMROPS_SIM_TOKEN", PASSWORD)
    result = cli("provision", "render", "--env", "production", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    path = Path(data["parameters_file"])
    assert path == tmp_path / ".emrops" / "params" / "production.parameters.json"
    rendered = json.loads(path.read_text())
    params = rendered["parameters"]
    assert params["environmentName"] == {"value": "production"}
    assert params["postgresGeoRedundantBackup"] == {"value": True}
    assert params["extraTags"] == {"value": {"cost-center": "emrsim-production"}}
    assert "simToken" not in params and "backupEncryptionKey" not in params
    assert PASSWORD not in path.read_text() and PASSWORD not in result.stdout
    by_name = {p["name"]: p for p in data["parameters"]}
    assert by_name["simToken"] == {
        "name": "simToken",
        "value": "***",
        "source": "env EMROPS_SIM_TOKEN",
        "secure": True,
    }
    # production has no password sign-in: the admin password keeps its empty default
    assert by_name["postgresAdminPassword"]["source"] == "default (main.bicep)"
    assert params["postgresPasswordAuth"] == {"value": False}
    assert by_name["location"]["source"] == "default (main.bicep)"
    assert data["resource_group"] == "emrsim-production-rg"


def test_render_shows_unset_secrets_as_unset_not_masked(cli, monkeypatch):
    monkeypatch.delenv("EMROPS_SIM_TOKEN", raising=False)
    monkeypatch.setenv("EMROPS_BACKUP_ENCRYPTION_KEY", "k" * 32)
    result = cli("provision", "render", "--env", "production", "--json")
    assert result.exit_code == 0, result.stderr
    by_name = {p["name"]: p for p in json.loads(result.stdout)["parameters"]}
    assert by_name["simToken"]["value"] == "(unset)"
    assert by_name["backupEncryptionKey"]["value"] == "***"
    table = cli("provision", "render", "--env", "production")
    row = next(line for line in table.stdout.splitlines() if "simToken" in line)
    assert "(unset)" in row and "***" not in row


def test_render_table_for_people(cli):
    result = cli("provision", "render", "--env", "staging")
    assert result.exit_code == 0, result.stderr
    assert "appServiceSku" in result.stdout and "S1" in result.stdout
    assert "wrote " in result.stderr


def test_key_vault_reference_is_rendered_as_reference(cli, bicep_copy):
    env_file = bicep_copy / "environments" / "staging.toml"
    vault = "/subscriptions/s/resourceGroups/kv-rg/providers/Microsoft.KeyVault/vaults/emrsim-kv"
    text = env_file.read_text().replace(
        'env = "EMROPS_BACKUP_ENCRYPTION_KEY"',
        f'key_vault = "{vault}"\nsecret = "backup-key"',
    )
    env_file.write_text(text)
    result = cli("provision", "render", "--env", "staging", "--json")
    assert result.exit_code == 0, result.stderr
    rendered = json.loads(Path(json.loads(result.stdout)["parameters_file"]).read_text())
    shown = {p["name"]: p["value"] for p in json.loads(result.stdout)["parameters"]}
    assert shown["backupEncryptionKey"] == "(Key Vault reference)"
    assert rendered["parameters"]["backupEncryptionKey"] == {
        "reference": {"keyVault": {"id": vault}, "secretName": "backup-key"}
    }


def test_unknown_environment_is_a_usage_error(cli):
    result = cli("provision", "render", "--env", "qa")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: unknown environment 'qa': ")
    assert lines[1] == "Try: use one of: production, staging"


def test_invalid_environment_name(cli):
    result = cli("provision", "render", "--env", "../etc")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: invalid environment name '../etc'")


def test_malformed_environment_file(cli, bicep_copy):
    (bicep_copy / "environments" / "staging.toml").write_text("[parameters\nfoo = 1\n")
    result = cli("provision", "render", "--env", "staging")
    assert result.exit_code == 2
    assert "staging.toml is not valid TOML" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("appInstanceCount = 1", 'appInstanceCount = "one"'),
            "parameter appInstanceCount must be int, got str 'one'",
        ),
        (
            ("appInstanceCount = 1", "appInstanceCount = 11"),
            "parameter appInstanceCount is 11; maximum is 10",
        ),
        (
            ('environmentName = "staging"', 'environmentName = "qa"'),
            "parameter environmentName is 'qa'; allowed: 'staging', 'production'",
        ),
        (
            ('namePrefix = "emrsim"', 'namePrefix = "emrsim"\nfavouriteColour = "blue"'),
            "unknown parameter(s) favouriteColour",
        ),
        (('alertEmail = "emrsim-ops@example.org"', ""), "missing required parameter(s) alertEmail"),
        (
            ('namePrefix = "emrsim"', 'namePrefix = "emrsim"\npostgresAdminPassword = "hunter22"'),
            "postgresAdminPassword given both in [parameters] and [secrets]",
        ),
        (
            ("[secrets.postgresAdminPassword]", "[secrets.postgresAdminPasswordX]"),
            "unknown parameter(s) postgresAdminPasswordX",
        ),
        (("[parameters]", "[parameter]"), "unknown section(s) parameter"),
    ],
)
def test_bad_environment_values(cli, bicep_copy, edit, message):
    env_file = bicep_copy / "environments" / "staging.toml"
    old, new = edit
    assert old in env_file.read_text()
    env_file.write_text(env_file.read_text().replace(old, new, 1))
    result = cli("provision", "render", "--env", "staging")
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr.splitlines()[0]


def test_secret_in_parameters_is_refused(cli, bicep_copy):
    env_file = bicep_copy / "environments" / "staging.toml"
    text = env_file.read_text().replace(
        '[secrets.postgresAdminPassword]\nenv = "EMROPS_POSTGRES_ADMIN_PASSWORD"\n', ""
    )
    text = text.replace("[parameters]\n", '[parameters]\npostgresAdminPassword = "hunter22"\n')
    env_file.write_text(text)
    result = cli("provision", "render", "--env", "staging")
    assert result.exit_code == 2
    assert "postgresAdminPassword is a secure parameter and must not be written" in result.stderr
    assert not (Path(".emrops") / "params" / "staging.parameters.json").exists()


def test_every_environment_renders(cli):
    for env in ("staging", "production"):
        result = cli("provision", "render", "--env", env, "--json")
        assert result.exit_code == 0, result.stderr
