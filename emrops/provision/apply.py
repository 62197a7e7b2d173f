"""Deploy (Incremental) with live operation progress, save outputs, destroy.

``apply`` with a saved plan refuses it when the template or parameters changed since
(the hash differs). A failed deployment is reported with the failing resource and ARM's
message, read from the deployment operations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.config import Settings
from emrops.errors import ChangesPending, EmropsError, UsageError
from emrops.provision import arm
from emrops.provision.environments import load_environment
from emrops.provision.plan import (
    Inputs,
    Plan,
    ResourceChange,
    ensure_resource_group,
    gather,
    what_if,
)

OUTPUTS_SCHEMA = "emrops.outputs/1"


@dataclass
class OperationStatus:
    resource: str  # type/name
    operation: str  # Create, Read, ...
    state: str  # Running, Succeeded, Failed, ...
    message: str = ""


Progress = Callable[[list[OperationStatus]], None]


@dataclass
class ApplyResult:
    environment: str
    resource_group: str
    deployment_name: str
    state: str
    duration_s: float
    outputs: dict[str, Any]
    outputs_file: Path
    operations: list[OperationStatus] = field(default_factory=list)


def check_fresh(plan: Plan, inputs: Inputs) -> None:
    """Refuse a plan made from other inputs than the current ones (exit 1)."""
    if plan.inputs_sha256 != inputs.sha256:
        raise EmropsError(
            f"stale plan: the template or parameters changed since the plan was made "
            f"({plan.inputs_sha256[:12]} != {inputs.sha256[:12]})",
            hint=f"run `emrops provision plan --env {plan.environment}` again and review it",
        )


def _signature(change: ResourceChange) -> tuple[str, tuple[tuple[str, str, str, str], ...]]:
    props = tuple(
        sorted(
            (
                p.path,
                p.change,
                json.dumps(p.before, sort_keys=True, default=str),
                json.dumps(p.after, sort_keys=True, default=str),
            )
            for p in change.properties
        )
    )
    return change.change, props


def drift(planned: list[ResourceChange], live: list[ResourceChange]) -> list[str]:
    """How a fresh what-if differs from the saved plan, one line per resource (empty: none)."""
    before = {c.resource_id: c for c in planned}
    after = {c.resource_id: c for c in live}
    lines = []
    for rid in sorted(set(before) | set(after)):
        old, new = before.get(rid), after.get(rid)
        label = (new or old).name or rid  # type: ignore[union-attr]
        if old is None:
            lines.append(f"{label}: not in the plan, now {new.change}")  # type: ignore[union-attr]
        elif new is None:
            lines.append(f"{label}: planned {old.change}, no longer predicted")
        elif _signature(old) != _signature(new):
            if old.change != new.change:
                lines.append(f"{label}: planned {old.change}, now {new.change}")
            else:
                paths = sorted(
                    {p.path for p in old.properties} ^ {p.path for p in new.properties}
                    | {
                        p.path
                        for p in new.properties
                        for q in old.properties
                        if p.path == q.path and (p.before, p.after) != (q.before, q.after)
                    }
                )
                lines.append(f"{label}: {new.change} differs at {', '.join(paths) or 'properties'}")
    return lines


def check_no_drift(clients: arm.ArmClients, plan: Plan, inputs: Inputs) -> None:
    """Re-run what-if; refuse (exit 4, ChangesPending) when the live state moved since the
    plan, so what gets applied is what was reviewed."""
    live, _ = what_if(clients, inputs, plan.deployment_name)
    lines = drift(plan.changes, live)
    if lines:
        shown = lines[:10] + ([f"... and {len(lines) - 10} more"] if len(lines) > 10 else [])
        raise ChangesPending(
            f"the live state of {plan.resource_group} drifted since the plan was made "
            f"({len(lines)} resource(s)):\n  " + "\n  ".join(shown),
            hint=f"run `emrops provision plan --env {plan.environment}` again and review it",
        )


def inputs_for_plan(settings: Settings, plan: Plan, env: str, template: Path | None) -> Inputs:
    """The current inputs for ``env``, from the same kind of template source the plan used."""
    if plan.environment != env:
        raise UsageError(f"the plan is for environment {plan.environment!r}, not {env!r}")
    if template is None and plan.template_from_file:
        template = Path(plan.template_source)
    return gather(settings, env, template)


def operations(clients: arm.ArmClients, rg: str, name: str) -> list[OperationStatus]:
    ops = arm.call(
        f"listing operations of {name}",
        lambda: list(clients.deployments.deployment_operations.list(rg, name)),
    )
    out = []
    for op in ops:
        props = arm.field(op, "properties")
        target = arm.field(props, "target_resource")
        rtype = arm.field(target, "resource_type") or ""
        rname = arm.field(target, "resource_name") or ""
        message = ""
        status = arm.field(props, "status_message")
        err = arm.field(status, "error")
        if err is not None:
            message = f"{arm.field(err, 'code')}: {arm.field(err, 'message')}"
        out.append(
            OperationStatus(
                resource=f"{rtype}/{rname}".strip("/") or "(deployment)",
                operation=arm.text(arm.field(props, "provisioning_operation")),
                state=arm.text(arm.field(props, "provisioning_state")),
                message=message,
            )
        )
    return out


def deploy(
    settings: Settings,
    clients: arm.ArmClients,
    inputs: Inputs,
    name: str,
    progress: Progress | None = None,
    poll_every: float | None = None,
) -> ApplyResult:
    """Create the deployment, report operations while it runs, save its outputs."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError
    from azure.mgmt.resource.deployments.models import Deployment, DeploymentProperties

    env = inputs.env
    ensure_resource_group(clients, env)
    body = Deployment(
        properties=DeploymentProperties(
            template=inputs.template, parameters=inputs.parameters, mode="Incremental"
        ),
        tags={"managed-by": "emrops", "inputs-sha256": inputs.sha256[:32]},
    )
    started = time.monotonic()
    poller = arm.call(
        f"starting deployment {name}",
        lambda: clients.deployments.deployments.begin_create_or_update(
            env.resource_group, name, body
        ),
    )
    interval = poll_every if poll_every is not None else (0.05 if clients.local else 5.0)
    failure: HttpResponseError | None = None
    try:
        while not poller.done():
            if progress:
                progress(operations(clients, env.resource_group, name))
            poller.wait(interval)
        result = poller.result()
    except HttpResponseError as exc:
        if _polling_failed(exc):  # a poll was refused (an expired token, a 5xx...)
            raise _lost_track(env, name, arm.arm_error_text(exc), exc) from exc
        failure = exc  # the LRO ended in Failed
        result = None
        ops = _operations_or_lost(clients, env, name)
    except EmropsError as exc:  # listing the operations failed; the deployment runs on
        raise _lost_track(env, name, exc.message, exc.__cause__) from exc
    except ServiceRequestError as exc:  # the network went away while polling
        raise _lost_track(env, name, str(exc).splitlines()[0], exc) from exc
    if failure is None:
        try:
            ops = operations(clients, env.resource_group, name)
        except EmropsError:  # the deployment has ended; its result is what counts
            ops = []
    if progress:
        progress(ops)
    state = arm.text(arm.field(result, "properties", "provisioning_state")) or "Failed"
    if failure is not None or state != "Succeeded":
        raise EmropsError(_failure_text(name, ops, failure, result), hint=_failure_hint(env.name))
    outputs = {
        key: arm.field(value, "value")
        for key, value in (arm.field(result, "properties", "outputs") or {}).items()
    }
    path = outputs_path(settings, env.name)
    atomic.write_json(
        path,
        {
            "schema": OUTPUTS_SCHEMA,
            "environment": env.name,
            "resource_group": env.resource_group,
            "deployment": name,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "outputs": outputs,
        },
        mode=0o600,
    )
    return ApplyResult(
        env.name, env.resource_group, name, state, time.monotonic() - started, outputs, path, ops
    )


def _polling_failed(exc: Any) -> bool:
    """A failed deployment comes back as the final status of a 200 poll; an HTTP error status
    means the poll itself was refused, and says nothing about the deployment."""
    status = getattr(exc, "status_code", None)
    return isinstance(status, int) and status >= 400


def _operations_or_lost(clients: arm.ArmClients, env: Any, name: str) -> list[OperationStatus]:
    try:
        return operations(clients, env.resource_group, name)
    except EmropsError as exc:
        raise _lost_track(env, name, exc.message, exc.__cause__) from exc


def _lost_track(env: Any, name: str, reason: str, cause: Any) -> EmropsError:
    """emrops can no longer follow a deployment ARM accepted: it was not cancelled."""
    auth = arm.is_auth_failure(cause)
    hint = (arm.auth_hint(cause) + "; then " if auth else "") + (
        f"follow it with `az deployment group show -g {env.resource_group} -n {name}` (or the "
        f"portal's Deployments blade); when it has finished, run `emrops provision plan --env "
        f"{env.name}` before another apply"
    )
    return EmropsError(
        f"lost track of deployment {name}: {reason}; the deployment was NOT cancelled and "
        f"may still be running in Azure, and its outputs were not saved",
        hint=hint,
    )


def _failure_text(name: str, ops: list[OperationStatus], exc: Any, result: Any) -> str:
    failed = [op for op in ops if op.state == "Failed" and op.resource != "(deployment)"]
    if failed:
        where = "; ".join(f"{op.resource}: {op.message or 'failed'}" for op in failed)
        return f"deployment {name} failed: {where}"
    if exc is not None:
        return f"deployment {name} failed: {arm.arm_error_text(exc)}"
    error = arm.field(result, "properties", "error")
    return f"deployment {name} failed: {arm.field(error, 'code')}: {arm.field(error, 'message')}"


def _failure_hint(env: str) -> str:
    return f"fix the resource named above, then run `emrops provision plan --env {env}` again"


def outputs_path(settings: Settings, env: str) -> Path:
    return settings.state_dir / "outputs" / f"{env}.json"


def read_outputs(settings: Settings, env_name: str) -> dict[str, Any]:
    """The saved outputs of the last successful apply of ``env_name``."""
    env = load_environment(settings, env_name)
    path = outputs_path(settings, env.name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EmropsError(
            f"no outputs for {env.name}: {path} does not exist",
            hint=f"run `emrops provision apply --env {env.name}` first",
        ) from exc
    except (OSError, ValueError) as exc:  # ValueError: not JSON or not UTF-8
        raise EmropsError(f"outputs file {path} is unreadable: {exc}") from exc
    except RecursionError:  # arrays nested thousands deep
        raise EmropsError(f"outputs file {path} is nested too deeply to read") from None
    if not isinstance(data, dict) or data.get("schema") != OUTPUTS_SCHEMA:
        raise EmropsError(f"{path} is not an emrops outputs file")
    return data


@dataclass
class DestroyPlan:
    environment: str
    resource_group: str
    exists: bool
    resources: list[str]


def plan_destroy(settings: Settings, clients: arm.ArmClients, env_name: str) -> DestroyPlan:
    """What ``destroy`` would delete: the resource group and everything in it."""
    from azure.core.exceptions import ResourceNotFoundError

    env = load_environment(settings, env_name)
    try:
        clients.resources.resource_groups.get(env.resource_group)
    except ResourceNotFoundError:
        return DestroyPlan(env.name, env.resource_group, False, [])
    items = arm.call(
        f"listing {env.resource_group}",
        lambda: list(clients.resources.resources.list_by_resource_group(env.resource_group)),
    )
    names = sorted(f"{arm.field(i, 'type')}/{arm.field(i, 'name')}" for i in items)
    return DestroyPlan(env.name, env.resource_group, True, names)


def destroy(settings: Settings, clients: arm.ArmClients, plan: DestroyPlan) -> None:
    """Delete the resource group (waits for it) and forget the saved outputs."""
    if plan.exists:
        what = f"deleting resource group {plan.resource_group}"
        poller = arm.call(
            what, lambda: clients.resources.resource_groups.begin_delete(plan.resource_group)
        )
        try:
            arm.call(what, poller.result)
        except EmropsError as exc:
            if not _polling_failed(exc.__cause__) and not _unreachable(exc.__cause__):
                raise  # ARM's verdict on the deletion (a lock, a failed delete)
            auth = arm.is_auth_failure(exc.__cause__)
            raise EmropsError(
                f"lost track of the deletion of {plan.resource_group}: {exc.message}; ARM "
                f"accepted it and it was NOT cancelled: it may still be running in Azure",
                hint=(arm.auth_hint(exc.__cause__) + "; then " if auth else "")
                + f"check with `az group show -n {plan.resource_group}` (not found: deleted); "
                f"`emrops provision destroy --env {plan.environment}` again forgets the "
                "saved outputs once it is gone",
            ) from exc
    outputs_path(settings, plan.environment).unlink(missing_ok=True)


def _unreachable(exc: Any) -> bool:
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    return isinstance(exc, ServiceRequestError | ServiceResponseError)
