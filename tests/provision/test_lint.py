"""provision lint: pycep-parser on every .bicep file, checkov (its own venv) for policy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emrops.provision.params import declared_parameters, parse_bicep
from emrops.resources import templates_dir

BUNDLED = templates_dir() / "bicep"
CHECKOV = Path(__file__).resolve().parents[2] / ".venv-checkov" / "bin" / "checkov"
needs_checkov = pytest.mark.skipif(
    not CHECKOV.exists() and shutil.which("checkov") is None,
    reason="checkov venv missing: run `make .venv-checkov/.installed` (make test does)",
)

STORAGE = """
@description('Region.')
param location string = resourceGroup().location

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  %s
  name: 'emropslinttest01'
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GRS'
  }
  properties: {
    allowBlobPublicAccess: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }
}
"""


def test_every_bundled_template_parses_with_pycep():
    files = sorted(BUNDLED.rglob("*.bicep"))
    assert {f.name for f in files} >= {
        "main.bicep",
        "app.bicep",
        "postgres.bicep",
        "storage.bicep",
        "monitor.bicep",
        "keyvault.bicep",
        "alerts.bicep",
        "network.bicep",
        "privateendpoint.bicep",
        "autoscale.bicep",
        "loadtest.bicep",
    }
    for path in files:
        assert parse_bicep(path), path


def test_main_bicep_follows_the_parameter_practices():
    specs = declared_parameters(BUNDLED / "main.bicep")
    assert all(s.description for s in specs.values()), "every parameter needs @description"
    assert {n for n, s in specs.items() if s.secure} == {
        "postgresAdminPassword",
        "backupEncryptionKey",
        "simToken",
    }
    parsed = parse_bicep(BUNDLED / "main.bicep")
    outputs = set(parsed["outputs"])
    assert not {o for o in outputs if "password" in o.lower() or "secret" in o.lower()}


@pytest.fixture
def lint_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bicep"
    (folder / "environments").mkdir(parents=True)
    monkeypatch.setenv("EMROPS_PROVISION_TEMPLATES", str(folder))
    return folder


@needs_checkov
@pytest.mark.parametrize("hash_seed", ["5", "8"])
def test_bundled_templates_pass_checkov(cli, monkeypatch, hash_seed):
    # checkov resolves a variable used as a resource property (`siteConfig: siteConfig`) only
    # under some string-hash orders: seeds 5 and 8 (among others) failed six App Service checks
    # before the site config was written out in the resources; a fresh CI run drew such a seed
    monkeypatch.setenv("PYTHONHASHSEED", hash_seed)
    result = cli("provision", "lint", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["failed"] == [] and data["unexplained"] == []
    assert data["passed"] > 20
    # every suppression carries its reason
    assert data["suppressed"] and all(len(f["reason"]) > 10 for f in data["suppressed"])
    assert "modules/storage.bicep" in data["files"]


@needs_checkov
def test_failed_check_exits_3(cli, lint_dir):
    (lint_dir / "main.bicep").write_text(STORAGE % "")
    result = cli("provision", "lint", "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert [f["check_id"] for f in data["failed"]] == ["CKV_AZURE_35"]  # network default Allow
    assert data["failed"][0]["resource"] == "Microsoft.Storage/storageAccounts.account"
    assert result.stderr.splitlines() == [
        "Error: lint: 1 check(s) failed in 1 Bicep file(s)",
        "Try: fix them, or suppress with `#checkov:skip=CKV_ID:why` in the resource",
    ]


@needs_checkov
def test_suppression_counts_only_with_a_written_reason(cli, lint_dir):
    (lint_dir / "main.bicep").write_text(STORAGE % "#checkov:skip=CKV_AZURE_35")
    result = cli("provision", "lint", "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert [f["check_id"] for f in data["unexplained"]] == ["CKV_AZURE_35"]
    assert data["failed"] == []

    reason = "CI runners have no fixed IPs; Entra ID auth is required"
    (lint_dir / "main.bicep").write_text(STORAGE % f"#checkov:skip=CKV_AZURE_35:{reason}")
    result = cli("provision", "lint", "--json")
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    assert [(f["check_id"], f["reason"]) for f in data["suppressed"]] == [("CKV_AZURE_35", reason)]


def test_invalid_bicep_is_reported_with_its_file(cli, lint_dir):
    (lint_dir / "main.bicep").write_text("resource 'oops' = {\n")
    result = cli("provision", "lint")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Error: {lint_dir / 'main.bicep'} is not valid Bicep")


def test_missing_checkov_says_how_to_install(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("EMROPS_PROVISION_CHECKOV", str(tmp_path / "no-such-checkov"))
    result = cli("provision", "lint")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"Error: checkov not found at {tmp_path / 'no-such-checkov'}"
    assert lines[1].startswith("Try: run `make .venv-checkov/.installed`")


OPEN_POSTGRES = """
@description('Region.')
param location string = resourceGroup().location

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2023-12-01-preview' = {
  name: 'emrops-lint-pg'
  location: location
  properties: {
    version: '16'
    network: {
      publicNetworkAccess: 'Enabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
  }
}

resource everyone 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2023-12-01-preview' = {
  parent: server
  name: 'AllowAzureServices'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource tls 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2023-12-01-preview' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    value: 'off'
    source: 'user-override'
  }
}
"""


@needs_checkov
def test_custom_postgres_checks_catch_an_open_server(cli, lint_dir):
    (lint_dir / "main.bicep").write_text(OPEN_POSTGRES)
    result = cli("provision", "lint", "--json")
    assert result.exit_code == 3
    failed = {(f["check_id"], f["resource"]) for f in json.loads(result.stdout)["failed"]}
    server = "Microsoft.DBforPostgreSQL/flexibleServers.server"
    assert {
        ("CKV_EMR_PG_1", server),  # public network access
        ("CKV_EMR_PG_2", "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules.everyone"),
        ("CKV_EMR_PG_3", server),  # no Entra ID
        ("CKV_EMR_PG_4", server),  # password auth by default
        ("CKV_EMR_PG_5", "Microsoft.DBforPostgreSQL/flexibleServers/configurations.tls"),
        ("CKV_EMR_PG_6", server),  # HA fixed to Disabled
    } <= failed
