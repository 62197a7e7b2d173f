"""Session 14: production set up the way Azure's own guidance does it (security baseline,
Well-Architected), evaluated per environment from the Bicep sources, and what emrops does
against an Azure set up that way."""

from __future__ import annotations

from typing import Any

import pytest

from emrops.provision.evaluate import Unknown
from tests.provision.fake_arm import FakeArm
from tests.provision.test_deploy import slots, template_db  # noqa: F401 (fixtures)


# ------------------------------------------------------------------ App Service
def test_basic_publishing_credentials_are_off_for_site_and_slot(rendered):
    env, ev = rendered
    # Azure Policy: "App Service apps (and slots) should have local authentication methods
    # disabled for FTP / SCM site deployments": both policies, on the site and on the slot
    for owner_type in ("Microsoft.Web/sites", "Microsoft.Web/sites/slots"):
        owner = ev.one(owner_type)
        policies = {
            p.name: p.properties
            for p in ev.of_type(f"{owner_type}/basicPublishingCredentialsPolicies")
            if p.body["parent"].type == owner.type and p.body["parent"].name == owner.name
        }
        assert policies == {"ftp": {"allow": False}, "scm": {"allow": False}}, (env, owner_type)


# ------------------------------------------------------------ deploy push without basic auth
SITE = "emrsim-production"


def _zip(tmp_path) -> str:
    import zipfile

    path = tmp_path / "app.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("requirements.txt", "fastapi==0.115.0\n")
    return str(path)


def _kudu_auth(azure: FakeArm, refuse: tuple[int, str] | None = None) -> list[str]:
    """Record the Authorization scheme of every Kudu request; Basic is refused as App Service
    does once `scm` basic publishing credentials are off; ``refuse`` answers the upload."""
    base: Any = azure.server.RequestHandlerClass
    schemes: list[str] = []

    class NoBasicKudu(base):  # type: ignore[misc, valid-type]
        def _kudu(self, method: str, site: Any, slot: str, body: bytes) -> None:
            header = self.headers.get("Authorization") or ""
            schemes.append(header.split(" ", 1)[0])
            if header.startswith("Basic "):
                self._error(401, "Unauthorized", "Basic authentication is disabled.")
                return
            if refuse and method == "POST":
                self._error(refuse[0], "Forbidden", refuse[1])
                return
            super()._kudu(method, site, slot, body)

    azure.server.RequestHandlerClass = NoBasicKudu
    return schemes


def _push(cli, tmp_path):
    return cli("deploy", "push", "--env", "production", "--site", SITE, "--package", _zip(tmp_path))


@pytest.mark.usefixtures("slots")
def test_push_deploys_with_entra_id_tokens_only(cli, azure: FakeArm, tmp_path) -> None:
    schemes = _kudu_auth(azure)
    result = _push(cli, tmp_path)
    assert result.exit_code == 0, result.stderr
    assert schemes and set(schemes) == {"Bearer"}
    assert len(azure.zip_deploys) == 1
    # and never asks ARM for the publishing profile or user (basic credentials)
    assert azure.count("POST", "publishingcredentials") == 0
    assert azure.count("POST", "publishxml") == 0


def test_push_refused_by_kudu_says_entra_id_and_which_role(cli, azure: FakeArm, tmp_path) -> None:
    azure.add_site("emrsim-production-rg", SITE)
    _kudu_auth(azure, refuse=(403, "The client does not have authorization to deploy."))
    result = _push(cli, tmp_path)
    assert result.exit_code == 1
    assert f"Error: zip deploy to {SITE}/staging was refused: HTTP 403" in result.stderr, (
        result.stderr
    )
    hint = " ".join(result.stderr.split("Try:", 1)[1].split())
    assert hint.startswith("Kudu takes only Entra ID tokens (basic publishing credentials are off)")
    assert f"Website Contributor or Contributor on the Web App {SITE}" in hint
    assert azure.zip_deploys == []


# ------------------------------------------------------------------ Storage
def test_backup_storage_is_zone_and_geo_redundant_in_production(rendered):
    env, ev = rendered
    account = ev.one("Microsoft.Storage/storageAccounts")
    # Well-Architected (reliability) for Storage: production backups survive the loss of a
    # zone and of the region, like the PostgreSQL server's geo-redundant backups
    expected = {"production": "Standard_GZRS", "staging": "Standard_LRS"}[env]
    assert account.body["sku"] == {"name": expected}


# ------------------------------------------------------------------ PostgreSQL
def test_postgres_refuses_tls_below_1_2_and_password_sign_in_in_production(rendered):
    env, ev = rendered
    configs = {
        c.name: c.properties
        for c in ev.of_type("Microsoft.DBforPostgreSQL/flexibleServers/configurations")
    }
    assert configs["ssl_min_protocol_version"] == {
        "value": "TLSv1.2",
        "source": "user-override",
    }, env
    assert configs["require_secure_transport"]["value"] == "on"
    auth = ev.one("Microsoft.DBforPostgreSQL/flexibleServers").properties["authConfig"]
    assert auth["activeDirectoryAuth"] == "Enabled"
    # password sign-in: off in production; staging keeps a break-glass administrator
    assert auth["passwordAuth"] == {"production": "Disabled", "staging": "Enabled"}[env]


# ------------------------------------------------------------ identities and role assignments
METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"


def test_telemetry_is_sent_with_the_app_identity_not_the_instrumentation_key(rendered):
    env, ev = rendered
    insights = ev.one("Microsoft.Insights/components")
    assert insights.properties["DisableLocalAuth"] is True
    identity = ev.one("Microsoft.ManagedIdentity/userAssignedIdentities")
    # the app identity may publish to this Application Insights resource, and only there
    [publisher] = [
        r
        for r in ev.of_type("Microsoft.Authorization/roleAssignments")
        if METRICS_PUBLISHER in str(r.properties["roleDefinitionId"])
    ]
    assert publisher.body["scope"].type == insights.type
    assert publisher.body["scope"].name == insights.name
    assert f"userAssignedIdentities/{identity.name}.properties>.principalId" in str(
        publisher.properties["principalId"]
    )
    assert publisher.properties["principalType"] == "ServicePrincipal"
    # and both slots sign their telemetry in with that identity (client id)
    for site_type in ("Microsoft.Web/sites", "Microsoft.Web/sites/slots"):
        settings = {
            s["name"]: s["value"].what if isinstance(s["value"], Unknown) else s["value"]
            for s in ev.one(site_type).properties["siteConfig"]["appSettings"]
        }
        auth = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        assert auth.startswith("Authorization=AAD;ClientId="), (env, site_type)
        assert f"userAssignedIdentities/{identity.name}.properties>.clientId" in auth


def test_role_assignments_to_the_app_identity_name_a_service_principal(rendered):
    env, ev = rendered
    identity = ev.one("Microsoft.ManagedIdentity/userAssignedIdentities")
    app = f"userAssignedIdentities/{identity.name}.properties>.principalId"
    to_app = [
        r
        for r in ev.of_type("Microsoft.Authorization/roleAssignments")
        if app in str(r.properties["principalId"])
    ]
    # blob data, blob tags, Key Vault secrets, telemetry
    assert len(to_app) == 4, env
    # a just-created identity may not be replicated yet: with principalType ARM does not
    # look it up (PrincipalNotFound otherwise)
    assert {r.module: r.properties.get("principalType") for r in to_app} == {
        "main/storage": "ServicePrincipal",
        "main/keyVault": "ServicePrincipal",
        "main/monitor": "ServicePrincipal",
    }


def test_log_analytics_takes_no_key_based_ingestion(rendered):
    env, ev = rendered
    workspace = ev.one("Microsoft.OperationalInsights/workspaces")
    assert workspace.properties["features"] == {"disableLocalAuth": True}, env


def test_postgres_maintenance_happens_in_a_chosen_window(rendered):
    env, ev = rendered
    server = ev.one("Microsoft.DBforPostgreSQL/flexibleServers").properties
    assert server["maintenanceWindow"] == {
        "customWindow": "Enabled",
        "dayOfWeek": 0,
        "startHour": 2,
        "startMinute": 0,
    }, env


def test_production_backups_can_be_restored_to_a_point_in_time(rendered):
    env, ev = rendered
    blob = ev.one("Microsoft.Storage/storageAccounts/blobServices").properties
    if env == "staging":
        assert blob["restorePolicy"] == {"enabled": False}
        assert blob["changeFeed"] == {"enabled": False}
        return
    # Azure's recommended blob data protection: versioning, soft delete, change feed and
    # point-in-time restore, whose window must be shorter than blob soft delete's
    assert blob["changeFeed"]["enabled"] is True
    assert blob["restorePolicy"] == {"enabled": True, "days": 7}
    assert blob["restorePolicy"]["days"] < blob["deleteRetentionPolicy"]["days"]
    assert blob["isVersioningEnabled"] is True
