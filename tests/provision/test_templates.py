"""What the bundled Bicep says for each environment, evaluated from the sources (pycep).

Every check runs on the templates evaluated with that environment's parameter values
(environments/<env>.toml), modules expanded and conditions applied, so a parameter file
cannot hide what the templates do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emrops.config import load_settings
from emrops.provision.environments import load_environment
from emrops.provision.evaluate import Evaluation, Ref, Unknown, evaluate, walk_strings
from tests.provision.conftest import BICEP, FIXTURES, SECRETS


# ---------------------------------------------------------------- every environment
def test_postgres_is_private_everywhere(rendered):
    env, ev = rendered
    server = ev.one("Microsoft.DBforPostgreSQL/flexibleServers")
    assert server.properties["network"] == {"publicNetworkAccess": "Disabled"}, env
    assert ev.of_type("Microsoft.DBforPostgreSQL/flexibleServers/firewallRules") == [], env
    endpoints = [
        r
        for r in ev.of_type("Microsoft.Network/privateEndpoints")
        if r.properties["privateLinkServiceConnections"][0]["properties"]["groupIds"]
        == ["postgresqlServer"]
    ]
    assert len(endpoints) == 1, env
    target = endpoints[0].properties["privateLinkServiceConnections"][0]["properties"]
    assert target["privateLinkServiceId"] == Ref(server.type, server.name, "id")


def test_no_open_address_anywhere(rendered):
    env, ev = rendered
    for resource in ev.resources:
        for text in walk_strings(resource.body):
            assert "0.0.0.0/0" not in text and text != "0.0.0.0", (env, resource.symbol, text)
        assert resource.type != "Microsoft.DBforPostgreSQL/flexibleServers/firewallRules"


def test_private_dns_zones_are_linked_to_the_vnet(rendered):
    env, ev = rendered
    vnet = ev.one("Microsoft.Network/virtualNetworks")
    zones = {z.name for z in ev.of_type("Microsoft.Network/privateDnsZones")}
    assert zones == {
        "privatelink.postgres.database.azure.com",
        "privatelink.blob.core.windows.net",
        "privatelink.vaultcore.azure.net",
    }
    links = ev.of_type("Microsoft.Network/privateDnsZones/virtualNetworkLinks")
    assert sorted(link.body["parent"].name for link in links) == sorted(zones)
    for link in links:
        assert link.properties["virtualNetwork"]["id"] == Ref(vnet.type, vnet.name, "id")
    groups = ev.of_type("Microsoft.Network/privateEndpoints/privateDnsZoneGroups")
    assert len(groups) == len(ev.of_type("Microsoft.Network/privateEndpoints")) == 4, env
    subnets = {s["name"]: s["properties"] for s in vnet.properties["subnets"]}
    assert subnets["app"]["delegations"][0]["properties"]["serviceName"] == (
        "Microsoft.Web/serverFarms"
    )
    assert set(subnets) == {"app", "endpoints", "ops"}


def test_postgres_signs_in_with_entra_id(rendered):
    env, ev = rendered
    server = ev.one("Microsoft.DBforPostgreSQL/flexibleServers")
    auth = server.properties["authConfig"]
    assert auth["activeDirectoryAuth"] == "Enabled"
    admin = ev.one("Microsoft.DBforPostgreSQL/flexibleServers/administrators")
    assert admin.properties["principalType"] == "Group"
    assert admin.name == "00000000-0000-0000-0000-00000000e0a1"
    configs = {
        c.name: c.properties["value"]
        for c in ev.of_type("Microsoft.DBforPostgreSQL/flexibleServers/configurations")
    }
    assert configs["require_secure_transport"] == "on"
    assert "CITEXT" in configs["azure.extensions"].split(","), env


def test_app_uses_token_auth_verify_full_and_a_key_vault_sim_token(rendered):
    env, ev = rendered
    for site_type in ("Microsoft.Web/sites", "Microsoft.Web/sites/slots"):
        site = ev.one(site_type)
        config = site.properties["siteConfig"]
        settings = {s["name"]: s["value"] for s in config["appSettings"]}
        assert "EMROPS_DB_PASSWORD" not in settings
        db_url = str(settings["EMROPS_DB_URL"])
        assert "auth=azure" in db_url and "sslmode=verify-full" in db_url
        assert "emrsim-" + env + "-app-id@" in db_url
        token = str(settings["EMROPS_SIM_TOKEN"])
        assert (
            token.startswith("@Microsoft.KeyVault(VaultName=") and "SecretName=sim-token" in token
        )
        assert config["appCommandLine"] == "python -m emrops sim serve --host 0.0.0.0 --port 8000"
        assert config["vnetRouteAllEnabled"] is True
        assert site.properties["virtualNetworkSubnetId"] is not None
        assert site.body["identity"]["type"] == "UserAssigned"
    assert SECRETS["simToken"] not in json.dumps(
        [s.body for s in ev.of_type("Microsoft.Web/sites")], default=str
    )


def test_storage_is_entra_only_deny_by_default_and_scoped(rendered):
    env, ev = rendered
    account = ev.one("Microsoft.Storage/storageAccounts")
    props = account.properties
    assert props["allowSharedKeyAccess"] is False
    assert props["allowBlobPublicAccess"] is False
    assert props["networkAcls"]["defaultAction"] == "Deny"
    # Storage Blob Data Contributor for the app identity, on the backups container only
    container = ev.one("Microsoft.Storage/storageAccounts/blobServices/containers")
    contributor = [
        r
        for r in ev.of_type("Microsoft.Authorization/roleAssignments")
        if "ba92f5b4-2d11-453d-a403-e96b0029c9fe" in str(r.properties["roleDefinitionId"])
    ]
    assert len(contributor) == 1
    assert contributor[0].body["scope"].type == container.type
    assert contributor[0].body["scope"].name == "backups"
    # Blob Data Contributor cannot set index tags: a narrow custom role on the container can
    role = ev.one("Microsoft.Authorization/roleDefinitions")
    assert role.properties["permissions"][0]["dataActions"] == [
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read",
        "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write",
    ]
    [tagger] = [
        r
        for r in ev.of_type("Microsoft.Authorization/roleAssignments")
        if r.properties["roleDefinitionId"] == Ref(role.type, role.name, "id")
    ]
    assert tagger.body["scope"].name == "backups"
    assert tagger.properties["principalId"] == contributor[0].properties["principalId"]


def test_lifecycle_never_deletes_pinned_backups(rendered):
    env, ev = rendered
    policy = ev.one("Microsoft.Storage/storageAccounts/managementPolicies")
    for rule in policy.properties["policy"]["rules"]:
        actions = rule["definition"]["actions"]
        if "delete" in actions.get("baseBlob", {}):
            # only blobs emrops tagged as not pinned; untagged and pinned blobs are kept
            assert rule["definition"]["filters"]["blobIndexMatch"] == [
                {"name": "emrops-pinned", "op": "==", "value": "false"}
            ], env


def test_backup_decryption_identity_is_out_of_the_apps_reach(rendered):
    env, ev = rendered
    identity = ev.one("Microsoft.ManagedIdentity/userAssignedIdentities")
    app_principal = f"userAssignedIdentities/{identity.name}.properties>.principalId"
    by_module: dict[str, list] = {}
    for r in ev.resources:
        by_module.setdefault(r.module, []).append(r)
    secrets = {r.name: r.module for r in ev.of_type("Microsoft.KeyVault/vaults/secrets")}
    assert secrets["backup-age-identity"] == "main/restoreVault"
    assert secrets["sim-token"] == "main/keyVault"
    readers = {
        module: [
            str(r.properties["principalId"])
            for r in resources
            if r.type.endswith("roleAssignments")
        ]
        for module, resources in by_module.items()
    }
    assert readers["main/restoreVault"] == ["00000000-0000-0000-0000-00000000e0a2"], env
    assert len(readers["main/keyVault"]) == 1 and app_principal in readers["main/keyVault"][0]
    assert all(app_principal not in p for p in readers["main/restoreVault"])


# ---------------------------------------------------------------- production
def test_production_has_no_public_data_plane(production):
    for rtype in ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"):
        for resource in production.of_type(rtype):
            assert resource.properties["publicNetworkAccess"] == "Disabled", resource.name
            assert resource.properties["networkAcls"]["ipRules"] == []
    server = production.one("Microsoft.DBforPostgreSQL/flexibleServers")
    assert server.properties["authConfig"]["passwordAuth"] == "Disabled"
    assert server.properties["administratorLoginPassword"] is None
    assert not [
        s
        for s in production.of_type("Microsoft.KeyVault/vaults/secrets")
        if s.name == "database-password"
    ]


def test_production_is_zone_redundant_and_autoscaled(production):
    server = production.one("Microsoft.DBforPostgreSQL/flexibleServers")
    assert server.body["sku"]["tier"] == "GeneralPurpose"
    assert server.properties["highAvailability"]["mode"] == "ZoneRedundant"
    assert (
        server.properties["highAvailability"]["standbyAvailabilityZone"]
        != (server.properties["availabilityZone"])
    )
    plan = production.one("Microsoft.Web/serverfarms")
    assert plan.properties["zoneRedundant"] is True
    assert plan.body["sku"]["name"].startswith("P") and plan.body["sku"]["name"].endswith("v3")
    autoscale = production.one("Microsoft.Insights/autoscalesettings")
    profile = autoscale.properties["profiles"][0]
    assert int(profile["capacity"]["minimum"]) >= 2
    assert int(profile["capacity"]["maximum"]) == 10
    metrics = {
        (r["metricTrigger"]["metricName"], r["scaleAction"]["direction"]) for r in profile["rules"]
    }
    assert metrics == {
        ("CpuPercentage", "Increase"),
        ("HttpQueueLength", "Increase"),
        ("CpuPercentage", "Decrease"),
    }
    scale_in = [r for r in profile["rules"] if r["scaleAction"]["direction"] == "Decrease"]
    assert scale_in[0]["scaleAction"]["cooldown"] == "PT15M"
    at_max = [
        a
        for a in production.of_type("Microsoft.Insights/metricAlerts")
        if a.properties["criteria"]["allOf"][0]["metricName"] == "ObservedCapacity"
    ]
    assert at_max and at_max[0].properties["criteria"]["allOf"][0]["threshold"] == 10
    assert production.one("Microsoft.LoadTestService/loadTests")


# ---------------------------------------------------------------- staging trade-off
def test_staging_keeps_public_access_only_from_allowed_ranges(staging):
    for rtype in ("Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults"):
        for resource in staging.of_type(rtype):
            assert resource.properties["publicNetworkAccess"] == "Enabled"
            acls = resource.properties["networkAcls"]
            assert acls["defaultAction"] == "Deny"
            assert [r["value"] for r in acls["ipRules"]] == ["203.0.113.0/24"]
    assert staging.of_type("Microsoft.Insights/autoscalesettings") == []


# ---------------------------------------------------------------- fixture agreement
def _arm_types(template: dict[str, Any]) -> set[str]:
    types = set()
    for resource in template.get("resources") or []:
        if resource["type"] == "Microsoft.Resources/deployments":
            types |= _arm_types(resource["properties"]["template"])
        else:
            types.add(resource["type"])
    return types


def test_fixture_arm_json_has_the_resource_types_of_main_bicep(production, staging):
    bicep_types = {r.type for ev in (production, staging) for r in ev.resources}
    fixture = json.loads((FIXTURES / "main.json").read_text())
    assert _arm_types(fixture) == bicep_types
    # and declares the same parameters
    from emrops.provision.params import declared_parameters

    assert set(fixture["parameters"]) == set(declared_parameters(BICEP / "main.bicep"))


def test_unknown_values_are_marked_not_guessed(production):
    server = production.one("Microsoft.DBforPostgreSQL/flexibleServers")
    assert isinstance(server.properties["authConfig"]["tenantId"], Unknown)


def test_evaluator_refuses_what_it_does_not_know(tmp_path: Path):
    from emrops.provision.evaluate import EvaluationError

    (tmp_path / "main.bicep").write_text(
        "param a string = 'x'\n"
        "resource r 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        "  name: base64(a)\n}\n"
    )
    with pytest.raises(EvaluationError, match=r"unsupported function base64\(\)"):
        evaluate(tmp_path / "main.bicep", {})


# ---------------------------------------------------------------- Azure guidance
# Azure Security Benchmark LT-3/LT-4 and the Well-Architected reliability and security
# pillars: resource logs to the workspace, PostgreSQL connection logging, locks on the data.
def _workspace_ref(ev: Evaluation) -> Ref:
    workspace = ev.one("Microsoft.OperationalInsights/workspaces")
    return Ref(workspace.type, workspace.name, "id")


def _scoped_to(ev: Evaluation, rtype: str, resource: Any) -> list:
    return [
        r
        for r in ev.of_type(rtype)
        if getattr(r.body.get("scope"), "type", None) == resource.type
        and getattr(r.body.get("scope"), "name", None) == resource.name
    ]


def _diagnostics(ev: Evaluation, resource: Any) -> tuple[set[str], set[str]]:
    """(log categories and category groups, metric categories) sent to the workspace."""
    [setting] = _scoped_to(ev, "Microsoft.Insights/diagnosticSettings", resource)
    props = setting.properties
    assert props["workspaceId"] == _workspace_ref(ev), resource.symbol
    logs = {
        entry.get("category") or entry.get("categoryGroup")
        for entry in props.get("logs") or []
        if entry["enabled"] is True
    }
    metrics = {entry["category"] for entry in props.get("metrics") or [] if entry["enabled"]}
    return logs, metrics


def test_postgres_sends_its_logs_and_metrics_to_the_workspace(rendered):
    env, ev = rendered
    logs, metrics = _diagnostics(ev, ev.one("Microsoft.DBforPostgreSQL/flexibleServers"))
    assert logs & {"allLogs", "PostgreSQLLogs"}, env
    assert metrics == {"AllMetrics"}, env


def test_app_service_site_and_slot_send_their_logs_to_the_workspace(rendered):
    env, ev = rendered
    wanted = {
        "AppServiceHTTPLogs",
        "AppServiceConsoleLogs",
        "AppServiceAppLogs",
        "AppServiceAuditLogs",
    }
    for site_type in ("Microsoft.Web/sites", "Microsoft.Web/sites/slots"):
        logs, metrics = _diagnostics(ev, ev.one(site_type))
        assert logs >= wanted, (env, site_type)
        assert metrics == {"AllMetrics"}, (env, site_type)


def test_postgres_logs_connections_disconnections_and_checkpoints_one_change_at_a_time(rendered):
    env, ev = rendered
    configs = ev.of_type("Microsoft.DBforPostgreSQL/flexibleServers/configurations")
    values = {c.name: c.properties for c in configs}
    for name in ("log_connections", "log_disconnections", "log_checkpoints"):
        assert values[name] == {"value": "on", "source": "user-override"}, (env, name)
    # ARM answers ServerIsBusy to a second configuration change while one is applied: the
    # configurations form one chain, each depending on the one before it
    names = {c.name for c in configs}
    previous = {}
    for config in configs:
        before = [d.name for d in config.body.get("dependsOn") or [] if d.name in names]
        assert len(before) <= 1, (env, config.name, before)
        previous[config.name] = before[0] if before else None
    [first] = [name for name, before in previous.items() if before is None]
    chain = [first]
    following = {before: name for name, before in previous.items() if before is not None}
    assert len(following) == len(configs) - 1, (env, previous)
    while chain[-1] in following:
        chain.append(following[chain[-1]])
    assert sorted(chain) == sorted(names), (env, chain)


def test_production_data_resources_are_locked_against_deletion(production):
    environment = load_environment(load_settings(), "production")
    assert environment.parameters["lockDataResources"] is True
    data = [
        production.one("Microsoft.DBforPostgreSQL/flexibleServers"),
        production.one("Microsoft.Storage/storageAccounts"),
        *production.of_type("Microsoft.KeyVault/vaults"),
    ]
    assert len(data) == 4  # server, backup storage, app vault, restore vault
    for resource in data:
        [lock] = _scoped_to(production, "Microsoft.Authorization/locks", resource)
        assert lock.properties["level"] == "CanNotDelete", resource.symbol
        notes = lock.properties["notes"]
        # the note says why, and how to remove the lock on purpose
        assert "lockDataResources" in notes and "az lock delete" in notes, notes
        assert len(notes) <= 512  # ARM's limit for lock notes
    assert len(production.of_type("Microsoft.Authorization/locks")) == len(data)


def test_staging_data_resources_are_not_locked(staging):
    environment = load_environment(load_settings(), "staging")
    assert environment.parameters["lockDataResources"] is False
    assert staging.of_type("Microsoft.Authorization/locks") == []


def test_backup_heartbeat_alert_watches_what_the_backup_store_receives(rendered):
    """The alert counted a customEvents row `emrops.backup.succeeded` in Application Insights
    that nothing in emrops sends: it would have fired every window however well backups ran.
    It now counts committed manifests (what `backup run` writes last) in the backup storage
    account's StorageBlobLogs, which its diagnostic setting sends to the workspace."""
    from emrops.backup.manifest import MANIFEST

    env, ev = rendered
    [alert] = [
        r
        for r in ev.of_type("Microsoft.Insights/scheduledQueryRules")
        if r.name.endswith("-backup-heartbeat")
    ]
    assert alert.properties["scopes"] == [_workspace_ref(ev)], env
    [criterion] = alert.properties["criteria"]["allOf"]
    query = criterion["query"]
    table = query.split("|")[0].strip()
    assert table == "StorageBlobLogs", query
    assert f'endswith "/{MANIFEST}"' in query and 'StatusText == "Success"' in query, query
    assert criterion["operator"] == "LessThan" and criterion["threshold"] == 1
    blob_service = ev.one("Microsoft.Storage/storageAccounts/blobServices")
    logs, _metrics = _diagnostics(ev, blob_service)
    assert "StorageWrite" in logs, env  # the rows the query counts reach the workspace
