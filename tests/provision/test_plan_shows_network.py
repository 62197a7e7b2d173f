"""provision plan lists the private networking, autoscale and load testing resources."""

from __future__ import annotations

import json


def test_plan_shows_network_scale_and_load_testing(cli, azure):
    result = cli("provision", "plan", "--env", "production", "--json")
    assert result.exit_code == 4, result.stderr
    types = {c["resource_type"] for c in json.loads(result.stdout)["changes"]}
    assert {
        "Microsoft.Network/virtualNetworks",
        "Microsoft.Network/privateEndpoints",
        "Microsoft.Network/privateDnsZones",
        "Microsoft.Network/privateDnsZones/virtualNetworkLinks",
        "Microsoft.DBforPostgreSQL/flexibleServers/administrators",
        "Microsoft.Insights/autoscalesettings",
        "Microsoft.LoadTestService/loadTests",
        "Microsoft.ManagedIdentity/userAssignedIdentities",
    } <= types
    table = cli("provision", "plan", "--env", "production")
    assert table.exit_code == 4 and "Resource changes: " in table.stdout
