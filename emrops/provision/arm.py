"""Azure Resource Manager clients: construction, credentials and error translation.

The SDK split matters: deployments moved out of ``azure-mgmt-resource`` (>= 25) into
``azure-mgmt-resource-deployments`` (``DeploymentsMgmtClient``); resource groups stay in
``azure-mgmt-resource`` and slots live in ``azure-mgmt-web``.

Credentials: ``DefaultAzureCredential`` (environment, workload identity in GitHub
Actions, managed identity, az login...), or a bearer token from
``EMROPS_AZURE_ACCESS_TOKEN``. ``azure.arm_endpoint`` points the clients at another
Resource Manager endpoint (sovereign clouds, Azure Stack, or a local ARM emulator: plain
http is accepted for loopback addresses only, and LROs are then polled without delay).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from emrops.config import Settings
from emrops.errors import EmropsError, UsageError

T = TypeVar("T")
PUBLIC_ARM = "https://management.azure.com"
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


STATIC_TOKEN_HINT = (
    "EMROPS_AZURE_ACCESS_TOKEN holds one fixed token, which cannot be renewed (they live 60-90 "
    "minutes): get a fresh one, or unset it so DefaultAzureCredential (az login, managed or "
    "workload identity) renews tokens during long operations"
)


class StaticTokenCredential:
    """A TokenCredential that hands out one bearer token (EMROPS_AZURE_ACCESS_TOKEN).

    The token's own ``exp`` claim (a JWT's payload, read without verifying it) is its expiry,
    so an expired token is refused here with a clear message instead of being sent to ARM;
    a token that is not a JWT is assumed to live ``lifetime`` seconds."""

    def __init__(self, token: str, lifetime: int = 3600):
        self._token = token
        self._expires = _jwt_expiry(token) or int(time.time()) + lifetime

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken
        from azure.core.exceptions import ClientAuthenticationError

        if time.time() >= self._expires:
            when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self._expires))
            raise ClientAuthenticationError(
                message=f"the token in EMROPS_AZURE_ACCESS_TOKEN expired at {when}"
            )
        return AccessToken(self._token, self._expires)


def _jwt_expiry(token: str) -> int | None:
    """The ``exp`` claim of a JWT (not verified: only used to know when it runs out)."""
    import base64
    import binascii
    import json

    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return int(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


@dataclass
class ArmClients:
    subscription_id: str
    base_url: str
    credential: Any
    polling_interval: float
    resources: Any  # azure.mgmt.resource.resources.ResourceManagementClient
    deployments: Any  # azure.mgmt.resource.deployments.DeploymentsMgmtClient
    web: Any  # azure.mgmt.web.WebSiteManagementClient

    @property
    def local(self) -> bool:
        return urlsplit(self.base_url).scheme == "http"


def subscription_id(settings: Settings) -> str:
    value = settings.get("azure.subscription_id")
    if not value:
        raise UsageError(
            "no Azure subscription configured",
            hint="set AZURE_SUBSCRIPTION_ID or azure.subscription_id in emrops.toml",
        )
    return str(value)


def endpoint(settings: Settings) -> str:
    """The Resource Manager endpoint; plain http only for loopback addresses."""
    url = str(settings.get("azure.arm_endpoint") or PUBLIC_ARM).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"invalid azure.arm_endpoint {url!r}", hint="use https://host")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise UsageError(
            f"azure.arm_endpoint {url} is plain http",
            hint="use https; http is accepted for loopback addresses only",
        )
    return url


def credential_for(settings: Settings) -> Any:
    token = settings.get("azure.access_token")
    if token:
        return StaticTokenCredential(str(token))
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def connect(
    settings: Settings,
    *,
    credential: Any = None,
    base_url: str | None = None,
    polling_interval: float | None = None,
) -> ArmClients:
    """Build the three SDK clients for the configured subscription and endpoint."""
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.web import WebSiteManagementClient

    sub = subscription_id(settings)
    url = (base_url or endpoint(settings)).rstrip("/")
    cred = credential or credential_for(settings)
    local = urlsplit(url).scheme == "http"
    interval = polling_interval if polling_interval is not None else (0.0 if local else 5.0)
    kwargs: dict[str, Any] = {"polling_interval": interval}
    if local:
        kwargs["authentication_policy"] = _loopback_auth_policy(cred)
        kwargs["retry_backoff_factor"] = 0.05
    return ArmClients(
        subscription_id=sub,
        base_url=url,
        credential=cred,
        polling_interval=interval,
        resources=ResourceManagementClient(cred, sub, base_url=url, **kwargs),
        deployments=DeploymentsMgmtClient(cred, sub, base_url=url, **kwargs),
        web=WebSiteManagementClient(cred, sub, base_url=url, **kwargs),
    )


def _loopback_auth_policy(credential: Any) -> Any:
    """Bearer auth that allows plain http: ``enforce_https`` is a per-request option in
    azure-core, so a loopback endpoint gets a policy that sets it on every request."""
    from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy

    class LoopbackAuthenticationPolicy(ARMChallengeAuthenticationPolicy):
        def on_request(self, request: Any) -> None:
            request.context.options["enforce_https"] = False
            super().on_request(request)

    return LoopbackAuthenticationPolicy(credential, "https://management.azure.com/.default")


def call(what: str, fn: Callable[[], T]) -> T:
    """Run one SDK call, turning Azure errors into EmropsError with ARM's code and message."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    try:
        return fn()
    except ClientAuthenticationError as exc:
        raise EmropsError(
            f"{what}: Azure authentication failed: {_first_line(exc)}", hint=auth_hint(exc)
        ) from exc
    except ResourceNotFoundError as exc:
        raise EmropsError(f"{what}: not found: {arm_error_text(exc)}") from exc
    except HttpResponseError as exc:
        if getattr(getattr(exc, "error", None), "code", None) == "ScopeLocked":
            # Production data resources carry CanNotDelete locks (lockDataResources): ARM
            # refuses the whole delete and nothing was removed.
            raise EmropsError(
                f"{what} failed: {arm_error_text(exc)}",
                hint="a CanNotDelete lock protects this scope (lockDataResources in production):"
                " nothing was deleted; if the deletion is intended, remove the lock first "
                "(`az lock list -g <group>`, then `az lock delete`) and run it again",
            ) from exc
        raise EmropsError(f"{what} failed: {arm_error_text(exc)}") from exc
    except ServiceRequestError as exc:
        raise EmropsError(
            f"{what}: cannot reach Azure Resource Manager: {_first_line(exc)}",
            hint="check the network and azure.arm_endpoint",
        ) from exc


def is_auth_failure(exc: Any) -> bool:
    """A refused credential: ClientAuthenticationError, or a 401 the LRO poller raised plain."""
    from azure.core.exceptions import ClientAuthenticationError

    return isinstance(exc, ClientAuthenticationError) or getattr(exc, "status_code", None) == 401


def auth_hint(exc: Any) -> str:
    """What to do about a refused credential: an expired token needs a renewable one."""
    code = getattr(getattr(exc, "error", None), "code", None)
    if code == "ExpiredAuthenticationToken" or "EMROPS_AZURE_ACCESS_TOKEN" in str(exc):
        return STATIC_TOKEN_HINT
    return "run `az login`, or set AZURE_CLIENT_ID/AZURE_TENANT_ID (workload identity)"


def arm_error_text(exc: Any) -> str:
    """``Code: message`` from an HttpResponseError's ARM error body."""
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    message = getattr(error, "message", None)
    if code or message:
        return f"{code}: {message}" if code else str(message)
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def field(obj: Any, *names: str) -> Any:
    """Read a nested attribute of an SDK model (or key of a dict), None when absent."""
    for name in names:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


def text(value: Any) -> str:
    """An SDK enum or string as its wire value ("Succeeded", not ProvisioningState.SUCCEEDED)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))
