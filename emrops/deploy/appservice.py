"""Talking to a Web App's slots: host names from ARM, health probes, Kudu zip deploy.

App traffic goes to ``https://<host>``; when ``azure.app_endpoint`` is set it goes to that
address instead with the slot's host name in the Host header (a front door, a private
endpoint, or a local emulator).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops.config import Settings
from emrops.errors import EmropsError, UsageError
from emrops.provision import arm
from emrops.provision.apply import outputs_path
from emrops.provision.environments import Environment

ARM_SCOPE = "https://management.azure.com/.default"
PROBE_TIMEOUT_S = 5.0  # one /ready probe; a wait for readiness cuts it to what is left
KUDU_AUTH_HINT = (
    "Kudu takes only Entra ID tokens (basic publishing credentials are off): deploy as a "
    "principal with Website Contributor or Contributor on the Web App {site} (az login, the "
    "CI's federated identity, or the one EMROPS_AZURE_ACCESS_TOKEN was issued to)"
)


@dataclass
class Slot:
    site: str
    slot: str  # "production" or a slot name
    host: str
    scm_host: str


@dataclass
class Probe:
    ok: bool
    status: int | None
    body: dict[str, Any] | None
    error: str = ""

    @property
    def summary(self) -> str:
        if self.ok:
            return "ready"
        if self.body and isinstance(self.body.get("error"), dict):
            return f"HTTP {self.status}: {self.body['error'].get('message')}"
        return f"HTTP {self.status}" if self.status else self.error


def site_name(settings: Settings, env: Environment, explicit: str | None) -> str:
    """--site, else [deploy] site_name in the environment file, else the saved outputs."""
    if explicit:
        return explicit
    if env.deploy.get("site_name"):
        return env.deploy["site_name"]
    path = outputs_path(settings, env.name)
    try:
        outputs = json.loads(path.read_text(encoding="utf-8"))["outputs"]
        return str(outputs["siteName"])
    except (OSError, KeyError, ValueError, TypeError):  # ValueError: not JSON or not UTF-8
        raise UsageError(
            f"which Web App? no siteName in {path}",
            hint=f"run `emrops provision apply --env {env.name}` first, or pass --site NAME",
        ) from None


def slot_hosts(clients: arm.ArmClients, rg: str, site: str, slot: str) -> Slot:
    """The slot's public and Kudu (scm) host names, read from ARM."""
    if slot == "production":
        body = arm.call(f"reading {site}", lambda: clients.web.web_apps.get(rg, site))
    else:
        body = arm.call(
            f"reading {site}/{slot}", lambda: clients.web.web_apps.get_slot(rg, site, slot)
        )
    host = arm.field(body, "default_host_name") or arm.field(body, "properties", "defaultHostName")
    scm = None
    for state in arm.field(body, "host_name_ssl_states") or []:
        if arm.text(arm.field(state, "host_type")) == "Repository":
            scm = arm.field(state, "name")
    if not host or not scm:
        raise EmropsError(f"{site}/{slot} has no host names in ARM (is the app running?)")
    return Slot(site, slot, str(host), str(scm))


class AppClient:
    """HTTP to slot hosts (probes) and Kudu (zip deploy), with optional endpoint override."""

    def __init__(self, settings: Settings, credential: Any = None):
        self.endpoint = (settings.get("azure.app_endpoint") or "").rstrip("/") or None
        self.credential = credential
        import requests

        self.session = requests.Session()

    def _url(self, host: str, path: str) -> tuple[str, dict[str, str]]:
        if self.endpoint:
            return self.endpoint + path, {"Host": host}
        return f"https://{host}{path}", {}

    def _token(self) -> str:
        if self.credential is None:
            raise EmropsError("no Azure credential for the Kudu API")
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return str(self.credential.get_token(ARM_SCOPE).token)
        except ClientAuthenticationError as exc:  # e.g. a fixed token that ran out mid-build
            raise EmropsError(
                f"no Azure token for the Kudu API: {str(exc).strip().splitlines()[0]}",
                hint=arm.auth_hint(exc),
            ) from exc

    def probe(self, host: str, path: str = "/ready", timeout: float = PROBE_TIMEOUT_S) -> Probe:
        import requests

        url, headers = self._url(host, path)
        try:
            response = self.session.get(url, headers=headers, timeout=timeout)
        except requests.Timeout as exc:  # urllib3's text carries the float it was given
            return Probe(
                False, None, None, f"{type(exc).__name__}: no answer within {timeout:.1f}s"
            )
        except requests.RequestException as exc:
            return Probe(False, None, None, f"{type(exc).__name__}: {exc}")
        try:
            body = response.json()
        except ValueError:
            body = None
        body = body if isinstance(body, dict) else None
        ready = response.status_code == 200 and (body or {}).get("status") == "ready"
        return Probe(ready, response.status_code, body)

    def zip_deploy(self, slot: Slot, package: Path, timeout: float, interval: float) -> None:
        """POST the zip to Kudu (async) and follow the deployment until it completes."""
        import requests

        url, headers = self._url(slot.scm_host, "/api/zipdeploy?isAsync=true")
        headers = {**headers, "Content-Type": "application/zip"}
        try:
            with package.open("rb") as handle:
                response = self.session.post(
                    url, data=handle, headers=self._authorized(headers), timeout=300
                )
        except requests.RequestException as exc:
            raise EmropsError(f"zip deploy to {slot.scm_host} failed: {exc}") from exc
        if response.status_code in (401, 403):
            # Basic publishing credentials are off (templates/bicep/modules/app.bicep), so Kudu
            # takes only an Entra ID token, and only from a principal with a role on the site.
            raise EmropsError(
                f"zip deploy to {slot.site}/{slot.slot} was refused: HTTP "
                f"{response.status_code} {response.text[:200]}",
                hint=KUDU_AUTH_HINT.format(site=slot.site),
            )
        if response.status_code not in (200, 202):
            raise EmropsError(
                f"zip deploy to {slot.site}/{slot.slot} was refused: HTTP "
                f"{response.status_code} {response.text[:200]}"
            )
        location = response.headers.get("Location")
        if response.status_code == 202 and location:
            self._follow(slot, location, timeout, interval)

    def _authorized(self, headers: dict[str, str]) -> dict[str, str]:
        # a token per request: a build (pip install on the host) can outlast a token, and the
        # credential hands out a renewed one when the cached one is about to expire
        return {**headers, "Authorization": f"Bearer {self._token()}"}

    def _follow(self, slot: Slot, location: str, timeout: float, interval: float) -> None:
        """Poll Kudu's deployment status. 401/403 end it at once (a fresh token was refused:
        retrying cannot help); another error status or a body that is not JSON (the scm site
        restarting, the record not written yet) is retried until timeout."""
        import requests

        path = "/" + location.split("/", 3)[3] if location.startswith("http") else location
        url, headers = self._url(slot.scm_host, path)
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while True:
            try:
                response = self.session.get(url, headers=self._authorized(headers), timeout=30)
            except requests.RequestException as exc:
                raise EmropsError(
                    f"cannot follow the zip deploy on {slot.scm_host}: {exc}"
                ) from exc
            if response.status_code in (401, 403):
                raise EmropsError(
                    f"cannot follow the zip deploy on {slot.scm_host}: HTTP "
                    f"{response.status_code} {response.text[:200]}",
                    hint="the deployment may still finish on the host; check the slot's "
                    "Deployment Center, then run `emrops deploy push` again",
                )
            status = _json_object(response)
            if response.status_code != 200 or status is None:
                last = f"HTTP {response.status_code} {response.text[:120]}"
            elif status.get("complete"):
                if status.get("status") != 4:  # Kudu: 3 failed, 4 success
                    detail = status.get("status_text") or status.get("message") or "failed"
                    raise EmropsError(f"zip deploy to {slot.site}/{slot.slot} failed: {detail}")
                return
            else:
                last = str(status.get("progress") or status.get("status_text") or "running")
            if time.monotonic() > deadline:
                raise EmropsError(
                    f"zip deploy to {slot.site}/{slot.slot} did not finish within "
                    f"{timeout:.0f}s (last answer: {last})"
                )
            time.sleep(interval)


def _json_object(response: Any) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def wait_ready(
    client: AppClient,
    host: str,
    timeout: float,
    interval: float,
    on_probe: Callable[[Probe], None] | None = None,
) -> Probe:
    """Probe ``/ready`` until it answers ready or ``timeout`` passes; the last probe.

    Each probe's own timeout is cut to what is left (at least 0.5 s), so a slot that accepts
    connections and never answers cannot stretch the wait by a whole probe timeout."""
    deadline = time.monotonic() + timeout
    while True:
        probe = client.probe(
            host, timeout=max(0.5, min(PROBE_TIMEOUT_S, deadline - time.monotonic()))
        )
        if on_probe:
            on_probe(probe)
        if probe.ok or time.monotonic() + interval > deadline:
            return probe
        time.sleep(interval)
