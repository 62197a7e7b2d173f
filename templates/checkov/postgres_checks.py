"""checkov checks (bicep framework) for the PostgreSQL Flexible Server rules checkov lacks.

Loaded by `emrops provision lint` with ``--external-checks-dir templates/checkov``. A value
that is an expression (a parameter or a condition) is not a literal checkov can judge:
those checks pass it on, and tests/provision/test_templates.py asserts the evaluated value
for each environment. A literal that breaks the rule fails.
"""

from __future__ import annotations

from typing import Any

from checkov.bicep.checks.resource.base_resource_check import BaseResourceCheck
from checkov.common.models.enums import CheckCategories, CheckResult

SERVER = "Microsoft.DBforPostgreSQL/flexibleServers"


def _get(conf: dict[str, Any], *path: str) -> Any:
    value: Any = conf
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _literal(value: Any) -> bool:
    return isinstance(value, (str, bool, int)) and not isinstance(value, dict)


class PostgresNoPublicNetworkAccess(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure PostgreSQL Flexible Server disables public network access",
            id="CKV_EMR_PG_1",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=(SERVER,),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = _get(conf, "properties", "network", "publicNetworkAccess")
        if isinstance(value, str) and value.lower() == "disabled":
            return CheckResult.PASSED
        return CheckResult.FAILED  # missing means Enabled for a server without VNet injection


class PostgresNoFirewallRules(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure PostgreSQL Flexible Server has no firewall rule (private access only)",
            id="CKV_EMR_PG_2",
            categories=(CheckCategories.NETWORKING,),
            supported_resources=(f"{SERVER}/firewallRules",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        return CheckResult.FAILED  # any rule opens the server to addresses outside the VNet


class PostgresEntraIdAuth(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure PostgreSQL Flexible Server enables Entra ID authentication",
            id="CKV_EMR_PG_3",
            categories=(CheckCategories.IAM,),
            supported_resources=(SERVER,),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = _get(conf, "properties", "authConfig", "activeDirectoryAuth")
        if isinstance(value, str) and value.lower() == "enabled":
            return CheckResult.PASSED
        return CheckResult.FAILED


class PostgresPasswordAuthNotForced(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure PostgreSQL password authentication is not switched on unconditionally",
            id="CKV_EMR_PG_4",
            categories=(CheckCategories.IAM,),
            supported_resources=(SERVER,),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = _get(conf, "properties", "authConfig", "passwordAuth")
        if value is None or (_literal(value) and str(value).lower() == "enabled"):
            return CheckResult.FAILED  # the API's default is Enabled
        return CheckResult.PASSED


class PostgresRequiresTls(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure PostgreSQL require_secure_transport is not turned off",
            id="CKV_EMR_PG_5",
            categories=(CheckCategories.ENCRYPTION,),
            supported_resources=(f"{SERVER}/configurations",),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        if str(conf.get("name", "")).lower() != "require_secure_transport":
            return CheckResult.UNKNOWN
        value = _get(conf, "properties", "value")
        if _literal(value) and str(value).lower() == "off":
            return CheckResult.FAILED
        return CheckResult.PASSED


class PostgresHighAvailabilityConfigured(BaseResourceCheck):
    def __init__(self) -> None:
        super().__init__(
            name="Ensure PostgreSQL high availability is configured (not fixed to Disabled)",
            id="CKV_EMR_PG_6",
            categories=(CheckCategories.BACKUP_AND_RECOVERY,),
            supported_resources=(SERVER,),
        )

    def scan_resource_conf(self, conf: dict[str, Any]) -> CheckResult:
        value = _get(conf, "properties", "highAvailability", "mode")
        if value is None or (_literal(value) and str(value).lower() == "disabled"):
            return CheckResult.FAILED
        return CheckResult.PASSED


checks = [
    PostgresNoPublicNetworkAccess(),
    PostgresNoFirewallRules(),
    PostgresEntraIdAuth(),
    PostgresPasswordAuthNotForced(),
    PostgresRequiresTls(),
    PostgresHighAvailabilityConfigured(),
]
