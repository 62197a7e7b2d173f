"""what-if as a saved plan: normalise ARM's prediction, filter its noise, hash the inputs.

A plan file (schema ``emrops.plan/1``) holds the normalised changes and a hash of the
template and the (non-secret) parameters; ``apply --plan`` refuses it when the hash of
the current inputs differs (a stale plan), and when a fresh what-if differs from the saved
changes (the live state drifted since the plan).

Planning never writes: what-if is a read-only POST. When the resource group does not exist
yet, the what-if runs at subscription scope on a wrapper that creates the group and deploys
the template into it, so the plan shows the group as a Create instead of creating it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.config import Settings
from emrops.errors import EmropsError, UsageError
from emrops.provision import arm
from emrops.provision.build import load_template
from emrops.provision.environments import Environment
from emrops.provision.render import deployment_parameters, load_checked

SCHEMA = "emrops.plan/1"
ACTIONABLE = ("Create", "Modify", "Delete", "Deploy")
# What each what-if changeType means for the plan's exit code. "pending": a deployment would
# act (exit 4). "none": nothing to do. "unknown": what-if cannot tell (Unsupported, or a
# type this version does not know), so the plan cannot promise "no changes": it counts as
# pending too (exit 4, a CI gate must not read it as "in sync"), and is shown as such.
CHANGE_RULES = {
    "Create": "pending",
    "Modify": "pending",
    "Delete": "pending",
    "Deploy": "pending",
    "NoChange": "none",
    "Ignore": "none",
    "NoEffect": "none",
    "Unsupported": "unknown",
}
_CANONICAL = {name.lower(): name for name in CHANGE_RULES}
# what-if predicts these property changes although a deployment would not make them
NOISE_PATHS = ("properties.provisioningState", "etag", "properties.createdTime")


@dataclass
class PropertyChange:
    path: str
    change: str  # Create, Delete, Modify, Array
    before: Any = None
    after: Any = None


@dataclass
class ResourceChange:
    resource_id: str
    resource_type: str
    name: str
    change: str  # Create, Modify, Delete, NoChange, Ignore, Deploy, Unsupported
    properties: list[PropertyChange] = field(default_factory=list)
    reason: str = ""  # why what-if cannot predict it (Unsupported)


def rule_of(change: str) -> str:
    """pending, none or unknown (CHANGE_RULES; a change type not listed is unknown)."""
    return CHANGE_RULES.get(change, "unknown")


@dataclass
class Plan:
    schema: str
    environment: str
    resource_group: str
    location: str
    deployment_name: str
    created_at: str
    template_source: str
    template_from_file: bool
    inputs_sha256: str
    changes: list[ResourceChange]
    filtered: int  # property changes dropped as noise

    @property
    def summary(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for change in self.changes:
            out[change.change] = out.get(change.change, 0) + 1
        return out

    @property
    def pending(self) -> int:
        """Changes a deployment would make plus those what-if cannot predict (exit 4)."""
        return sum(1 for c in self.changes if rule_of(c.change) != "none")

    @property
    def unpredicted(self) -> int:
        return sum(1 for c in self.changes if rule_of(c.change) == "unknown")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["summary"] = self.summary
        data["pending"] = self.pending
        data["unpredicted"] = self.unpredicted
        return data


@dataclass
class Inputs:
    """Everything a deployment is made of, ready to send."""

    env: Environment
    template: dict[str, Any]
    template_source: str
    template_from_file: bool
    parameters: dict[str, Any]  # with secret values: never written anywhere
    public_parameters: dict[str, Any]

    @property
    def sha256(self) -> str:
        canonical = json.dumps(
            {
                "template": self.template,
                "parameters": self.public_parameters,
                "resource_group": self.env.resource_group,
                "location": self.env.location,
                "mode": "Incremental",
            },
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()


def gather(settings: Settings, env_name: str, template: Path | None) -> Inputs:
    env = load_checked(settings, env_name)
    body, source = load_template(settings, template)
    full, public = deployment_parameters(settings, env)
    return Inputs(env, body, source, template is not None, full, public)


def deployment_name(env: str, now: datetime | None = None) -> str:
    """``emrops-<env>-<utc>-<gitsha>``: unique per run, so history is never overwritten."""
    now = now or datetime.now(UTC)
    sha = os.environ.get("GITHUB_SHA", "")[:8] or _git_sha() or "local"
    return f"emrops-{env}-{now:%Y%m%d%H%M%S}-{sha}"[:64]


def _git_sha() -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short=8", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


RG_TYPE = "Microsoft.Resources/resourceGroups"
RG_API = "2022-09-01"


def resource_group_exists(clients: arm.ArmClients, env: Environment) -> bool:
    """A GET on the group (read-only); False on 404."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        arm.call(
            f"reading resource group {env.resource_group}",
            lambda: clients.resources.resource_groups.get(env.resource_group),
        )
    except EmropsError as exc:
        if isinstance(exc.__cause__, ResourceNotFoundError):
            return False
        raise
    return True


def _group_tags(env: Environment) -> dict[str, str]:
    return {"managed-by": "emrops", "environment": env.name}


def ensure_resource_group(clients: arm.ArmClients, env: Environment) -> None:
    body = {"location": env.location, "tags": _group_tags(env)}
    arm.call(
        f"creating resource group {env.resource_group}",
        lambda: clients.resources.resource_groups.create_or_update(env.resource_group, body),
    )


def what_if(clients: arm.ArmClients, inputs: Inputs, name: str) -> tuple[list[ResourceChange], int]:
    """Run what-if and normalise the result; an error inside a 200 response is an error."""
    from azure.mgmt.resource.deployments.models import (
        DeploymentWhatIf,
        DeploymentWhatIfProperties,
        DeploymentWhatIfSettings,
    )

    body = DeploymentWhatIf(
        properties=DeploymentWhatIfProperties(
            template=inputs.template,
            parameters=inputs.parameters,
            mode="Incremental",
            what_if_settings=DeploymentWhatIfSettings(result_format="FullResourcePayloads"),
        )
    )
    rg = inputs.env.resource_group
    if resource_group_exists(clients, inputs.env):
        result = arm.call(
            f"what-if on {rg}",
            lambda: clients.deployments.deployments.begin_what_if(rg, name, body).result(),
        )
    else:
        wrapper = _subscription_what_if(inputs, name)
        result = arm.call(
            f"what-if for the new resource group {rg}",
            lambda: clients.deployments.deployments.begin_what_if_at_subscription_scope(
                name, wrapper
            ).result(),
        )
    return _changes_of(result)


def _subscription_what_if(inputs: Inputs, name: str) -> Any:
    """A subscription-scope what-if body: create the group, then deploy into it (nested)."""
    from azure.mgmt.resource.deployments.models import (
        DeploymentWhatIf,
        DeploymentWhatIfProperties,
        DeploymentWhatIfSettings,
    )

    env = inputs.env
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2018-05-01/"
        "subscriptionDeploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            {
                "type": RG_TYPE,
                "apiVersion": RG_API,
                "name": env.resource_group,
                "location": env.location,
                "tags": _group_tags(env),
            },
            {
                "type": "Microsoft.Resources/deployments",
                "apiVersion": RG_API,
                "name": name,
                "resourceGroup": env.resource_group,
                "dependsOn": [env.resource_group],
                "properties": {
                    "mode": "Incremental",
                    "expressionEvaluationOptions": {"scope": "inner"},
                    "template": inputs.template,
                    "parameters": inputs.parameters,
                },
            },
        ],
    }
    return DeploymentWhatIf(
        location=env.location,
        properties=DeploymentWhatIfProperties(
            template=template,
            mode="Incremental",
            what_if_settings=DeploymentWhatIfSettings(result_format="FullResourcePayloads"),
        ),
    )


def _changes_of(result: Any) -> tuple[list[ResourceChange], int]:
    error = arm.field(result, "error")
    if error is not None or arm.text(arm.field(result, "status")).lower() == "failed":
        code = arm.field(error, "code") or "WhatIfFailed"
        message = arm.field(error, "message") or "what-if reported a failure"
        details = [
            f"{arm.field(d, 'code')}: {arm.field(d, 'message')}"
            for d in (arm.field(error, "details") or [])
        ]
        extra = ("; " + "; ".join(details)) if details else ""
        raise EmropsError(
            f"what-if failed: {code}: {message}{extra}", hint="fix the template or parameters"
        )
    changes = arm.field(result, "properties", "changes") or []
    return normalise(changes)


def normalise(raw_changes: list[Any]) -> tuple[list[ResourceChange], int]:
    """ResourceChange list sorted by id; Modify with only noise becomes NoChange."""
    out: list[ResourceChange] = []
    filtered = 0
    for raw in raw_changes:
        rid = _identity(raw)
        kind = arm.text(arm.field(raw, "change_type") or arm.field(raw, "changeType"))
        kind = _CANONICAL.get(kind.lower(), kind or "Unknown")
        props: list[PropertyChange] = []
        for delta in arm.field(raw, "delta") or []:
            prop = _property(delta)
            if _is_noise(prop):
                filtered += 1
            else:
                props.append(prop)
        if kind == "Modify" and not props:
            kind = "NoChange"
        rtype, name = _type_and_name(rid)
        rtype = rtype or str(
            arm.field(raw, "resource_type") or arm.field(raw, "resourceType") or ""
        )
        reason = arm.field(raw, "unsupported_reason") or arm.field(raw, "unsupportedReason")
        if rule_of(kind) == "unknown" and not reason:
            reason = f"what-if change type {kind!r} is not known to emrops"
        out.append(ResourceChange(rid, rtype, name, kind, props, str(reason or "")))
    out.sort(key=_order)
    return out, filtered


def _order(change: ResourceChange) -> tuple[int, str]:
    if change.change in ACTIONABLE:
        return ACTIONABLE.index(change.change), change.resource_id
    return (5 if rule_of(change.change) == "unknown" else 9), change.resource_id


def _identity(raw: Any) -> str:
    """The resource id; extensible resources (Bicep extensions) have none, only a
    deployment id or a symbolic name, which then names the change."""
    for key in ("resource_id", "resourceId", "deployment_id", "deploymentId"):
        value = arm.field(raw, key)
        if value:
            return str(value)
    symbolic = arm.field(raw, "symbolic_name") or arm.field(raw, "symbolicName")
    return f"symbolic:{symbolic}" if symbolic else ""


def _property(delta: Any) -> PropertyChange:
    kind = arm.text(
        arm.field(delta, "property_change_type") or arm.field(delta, "propertyChangeType")
    )
    return PropertyChange(
        path=str(arm.field(delta, "path")),
        change=kind,
        before=arm.field(delta, "before"),
        after=arm.field(delta, "after"),
    )


def _is_noise(prop: PropertyChange) -> bool:
    if prop.change == "NoEffect" or prop.path in NOISE_PATHS:
        return True
    # an unresolved reference() always shows as a change; the deployment resolves it
    return isinstance(prop.after, str) and prop.after.startswith("[reference(")


def _type_and_name(resource_id: str) -> tuple[str, str]:
    parts = resource_id.strip("/").split("/")
    if "providers" not in parts and len(parts) == 4 and parts[2].lower() == "resourcegroups":
        return RG_TYPE, parts[3]
    if "providers" not in parts:
        return "", parts[-1] if parts else ""
    i = len(parts) - 1 - parts[::-1].index("providers")
    rest = parts[i + 1 :]
    if not rest:
        return "", parts[-1]
    namespace, segments = rest[0], rest[1:]
    types = segments[0::2]
    names = segments[1::2]
    return "/".join([namespace, *types]), "/".join(names)


def make_plan(
    settings: Settings,
    env_name: str,
    template: Path | None,
    clients: arm.ArmClients,
) -> tuple[Plan, Inputs]:
    inputs = gather(settings, env_name, template)
    name = deployment_name(inputs.env.name)
    changes, filtered = what_if(clients, inputs, name)  # read-only: no group is created
    plan = Plan(
        schema=SCHEMA,
        environment=inputs.env.name,
        resource_group=inputs.env.resource_group,
        location=inputs.env.location,
        deployment_name=name,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        template_source=inputs.template_source,
        template_from_file=inputs.template_from_file,
        inputs_sha256=inputs.sha256,
        changes=changes,
        filtered=filtered,
    )
    return plan, inputs


def default_plan_path(settings: Settings, env: str) -> Path:
    return settings.state_dir / "plans" / f"{env}.plan.json"


def save_plan(plan: Plan, path: Path) -> None:
    atomic.write_json(path, plan.to_json(), mode=0o600)


def load_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"plan file {path} not found", hint="run `emrops provision plan`") from exc
    except (OSError, ValueError) as exc:  # ValueError: not JSON or not UTF-8
        raise UsageError(f"plan file {path} is unreadable: {exc}") from exc
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"plan file {path} is nested too deeply to read") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise UsageError(f"{path} is not an emrops plan ({SCHEMA})")
    try:
        changes = [
            ResourceChange(
                **{**c, "properties": [PropertyChange(**p) for p in c.get("properties", [])]}
            )
            for c in data["changes"]
        ]
        fields = {k: data[k] for k in Plan.__dataclass_fields__ if k != "changes"}
    except (KeyError, TypeError) as exc:
        raise UsageError(f"plan file {path} is incomplete: {exc}") from exc
    return Plan(changes=changes, **fields)
