"""Session 13: the templates against Azure's security baseline and Well-Architected guidance
for App Service, Storage, Key Vault and PostgreSQL Flexible Server, evaluated per
environment from the Bicep sources (as tests/provision/test_templates.py does)."""

from __future__ import annotations

from tests.provision.conftest import evaluate_env


def test_site_and_slot_follow_the_app_service_baseline(rendered):
    env, ev = rendered
    for site_type in ("Microsoft.Web/sites", "Microsoft.Web/sites/slots"):
        site = ev.one(site_type)
        config = site.properties["siteConfig"]
        assert site.properties["httpsOnly"] is True, (env, site_type)
        assert config["minTlsVersion"] == "1.2"
        # the Kudu (scm) site is the deployment door: the same TLS floor, said explicitly
        assert config["scmMinTlsVersion"] == "1.2", (env, site_type)
        assert config["remoteDebuggingEnabled"] is False, (env, site_type)
        assert config["ftpsState"] == "Disabled"
        assert config["alwaysOn"] is True
        assert config["healthCheckPath"] == "/ready"


def test_storage_refuses_cross_tenant_replication_and_keeps_deleted_blobs(rendered):
    env, ev = rendered
    props = ev.one("Microsoft.Storage/storageAccounts").properties
    # backups must not be replicable into another tenant's account (Azure Policy built-in
    # "Storage accounts should prevent cross tenant object replication")
    assert props["allowCrossTenantReplication"] is False, env
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    blob = ev.one("Microsoft.Storage/storageAccounts/blobServices").properties
    assert blob["isVersioningEnabled"] is True
    assert blob["deleteRetentionPolicy"]["enabled"] is True
    assert blob["containerDeleteRetentionPolicy"]["enabled"] is True


def test_key_vaults_use_rbac_and_purge_protection(rendered):
    env, ev = rendered
    vaults = ev.of_type("Microsoft.KeyVault/vaults")
    assert len(vaults) == 2, env
    for vault in vaults:
        assert vault.properties["enableRbacAuthorization"] is True
        assert vault.properties["enablePurgeProtection"] is True
        assert vault.properties["softDeleteRetentionInDays"] == 90


def test_production_postgres_is_zone_redundant_geo_backed_up_and_tls_only():
    ev = evaluate_env("production")
    server = ev.one("Microsoft.DBforPostgreSQL/flexibleServers").properties
    assert server["highAvailability"]["mode"] == "ZoneRedundant"
    assert server["backup"]["geoRedundantBackup"] == "Enabled"
    configs = {
        c.name.split("/")[-1]: c.properties["value"]
        for c in ev.of_type("Microsoft.DBforPostgreSQL/flexibleServers/configurations")
    }
    assert configs["require_secure_transport"] == "on"
