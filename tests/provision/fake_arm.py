"""A local HTTP server that speaks the parts of the ARM REST protocol emrops uses.

It stands in for Azure Resource Manager (which cannot be reached from here) at the HTTP
boundary: the real Azure SDK clients talk to it with ``enforce_https=False`` and a static
bearer token. Response shapes follow the official REST API examples
(Azure/azure-rest-api-specs, Microsoft.Resources 2021-04-01 and Microsoft.Web):

- resource groups: PUT/GET/DELETE (DELETE is a 202 + ``Location`` long-running operation)
- deployments: PUT (201 + ``Azure-AsyncOperation``), GET, ``whatIf`` (202 + ``Location``),
  ``operations`` list; outputs are evaluated from the template
- web apps: GET site/slot, ``slotsswap`` (202 + ``Location``), which flips host routing
- Kudu ``/api/zipdeploy`` on the ``*.scm.azurewebsites.net`` host names
- app traffic: a request whose Host is a slot's host name is proxied to the process
  bound to that slot, so probes hit whatever the last swap produced.

Knobs for failure cases: ``throttle`` (429 + Retry-After), ``what_if_error`` (an error
inside an HTTP 200), ``fail_resource`` (a deployment that fails on one resource).
"""

from __future__ import annotations

import io
import json
import re
import threading
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "fake-arm-token"
APP_DOMAIN = "azurewebsites.net"
SUB = r"/subscriptions/(?P<sub>[^/]+)"
RG = SUB + r"/resource[gG]roups/(?P<rg>[^/]+)"
DEP = RG + r"/(?:providers/Microsoft\.Resources/)?deployments/(?P<name>[^/]+)"
SITE = RG + r"/providers/Microsoft\.Web/sites/(?P<site>[^/]+)"


# ---------------------------------------------------------------- template expressions
def evaluate(value: Any, params: dict[str, Any]) -> Any:
    """Evaluate ``[parameters('x')]``, ``[format(...)]`` and ``[concat(...)]`` in a value."""
    if isinstance(value, dict):
        return {k: evaluate(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate(v, params) for v in value]
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        expr, rest = _parse(value[1:-1].strip(), params)
        if rest.strip():
            raise ValueError(f"cannot evaluate {value}")
        return expr
    return value


def _parse(text: str, params: dict[str, Any]) -> tuple[Any, str]:
    text = text.lstrip()
    if text.startswith("'"):
        end = text.index("'", 1)
        return text[1:end], text[end + 1 :]
    match = re.match(r"-?\d+", text)
    if match:
        return int(match.group()), text[match.end() :]
    match = re.match(r"(\w+)\(", text)
    if not match:
        raise ValueError(f"cannot evaluate {text!r}")
    func, text = match.group(1), text[match.end() :]
    args: list[Any] = []
    while True:
        text = text.lstrip()
        if text.startswith(")"):
            text = text[1:]
            break
        arg, text = _parse(text, params)
        args.append(arg)
        text = text.lstrip()
        if text.startswith(","):
            text = text[1:]
    if func == "parameters":
        return params[args[0]], text
    if func == "concat":
        return "".join(str(a) for a in args), text
    if func == "format":
        return args[0].format(*args[1:]), text
    raise ValueError(f"unsupported template function {func}")


# ---------------------------------------------------------------- state
@dataclass
class Site:
    rg: str
    name: str
    # slot name -> backend base URL of the process serving it ("production", "staging")
    backends: dict[str, str] = field(default_factory=dict)
    swaps: int = 0

    def host(self, slot: str, scm: bool = False) -> str:
        base = self.name if slot == "production" else f"{self.name}-{slot}"
        return f"{base}.scm.{APP_DOMAIN}" if scm else f"{base}.{APP_DOMAIN}"


@dataclass
class AsyncOp:
    kind: str  # deployment | whatif | delete-rg | swap
    polls_left: int
    finish: Callable[[], dict[str, Any] | None]
    result: dict[str, Any] | None = None
    done: bool = False


class FakeArm:
    def __init__(self, subscription: str = "00000000-0000-0000-0000-000000000001"):
        self.subscription = subscription
        self.groups: dict[str, dict[str, Any]] = {}
        self.resources: dict[str, dict[str, dict[str, Any]]] = {}  # rg -> id -> resource
        self.deployments: dict[tuple[str, str], dict[str, Any]] = {}
        self.ops: dict[str, AsyncOp] = {}
        self.sites: dict[str, Site] = {}
        self.requests: list[tuple[str, str]] = []
        self.zip_deploys: list[tuple[str, str, bytes]] = []  # (site, slot, zip bytes)
        self.on_zip_deploy: Callable[[Site, str, bytes], None] | None = None
        self.on_swap: Callable[[Site], None] | None = None
        self.refuse_swap: int | None = None  # the swap (1-based, per site) answered 409
        self.polls = 2
        self.throttle: dict[str, int] = {}  # path fragment -> 429 answers left
        self.what_if_error: dict[str, Any] | None = None
        self.fail_resource: dict[str, str] | None = None  # name, code, message
        self.lock = threading.RLock()
        self.server = _QuietServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> FakeArm:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_site(self, rg: str, name: str) -> Site:
        with self.lock:
            self.groups.setdefault(rg, {"location": "westeurope", "tags": {}})
            site = self.sites.setdefault(name, Site(rg, name))
            return site

    def count(self, method: str, fragment: str) -> int:
        return sum(1 for m, p in self.requests if m == method and fragment in p)

    # ------------------------------------------------------------ helpers for handlers
    def rid(self, rg: str, rtype: str, name: str) -> str:
        namespace, *types = rtype.split("/")
        names = name.split("/")
        path = "/".join(f"{t}/{n}" for t, n in zip(types, names, strict=True))
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{rg}/providers/{namespace}/{path}"
        )

    def expand(self, rg: str, template: dict[str, Any], given: dict[str, Any]):
        declared = template.get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise ArmError(
                400,
                "InvalidTemplate",
                f"Deployment template validation failed: 'The template parameters "
                f"'{', '.join(unknown)}' in the parameters file are not valid; they are not "
                f"present in the original template.'",
            )
        params: dict[str, Any] = {}
        for pname, spec in declared.items():
            if pname in given:
                if "reference" in given[pname]:
                    params[pname] = "<key-vault-reference>"
                else:
                    params[pname] = given[pname]["value"]
            elif "defaultValue" in spec:
                params[pname] = evaluate(spec["defaultValue"], params)
            else:
                raise ArmError(
                    400,
                    "InvalidTemplate",
                    f"Deployment template validation failed: 'The value for the template "
                    f"parameter '{pname}' is not provided.'",
                )
        out = {}
        for res in template.get("resources") or []:
            name = evaluate(res["name"], params)
            rid = self.rid(rg, res["type"], name)
            props = evaluate(res.get("properties") or {}, params)
            out[rid] = {"id": rid, "type": res["type"], "name": name, "properties": props}
        outputs = {
            key: {"type": spec.get("type", "String"), "value": evaluate(spec["value"], params)}
            for key, spec in (template.get("outputs") or {}).items()
        }
        return out, outputs

    def what_if_changes(self, rg: str, wanted: dict[str, dict[str, Any]]) -> list[dict]:
        current = self.resources.get(rg, {})
        changes = []
        for rid, res in sorted(wanted.items()):
            before = current.get(rid)
            if before is None:
                changes.append({"resourceId": rid, "changeType": "Create", "after": res})
                continue
            delta = [
                {
                    "path": f"properties.{key}",
                    "propertyChangeType": "Modify",
                    "before": before["properties"].get(key),
                    "after": value,
                }
                for key, value in sorted(res["properties"].items())
                if before["properties"].get(key) != value
            ]
            # ARM's noise: provisioningState always shows up as a no-effect change
            noise = {
                "path": "properties.provisioningState",
                "propertyChangeType": "NoEffect",
                "before": "Succeeded",
                "after": None,
            }
            changes.append(
                {
                    "resourceId": rid,
                    "changeType": "Modify" if delta else "Modify",
                    "before": before,
                    "after": res,
                    "delta": delta + [noise],
                }
            )
        for rid in sorted(set(current) - set(wanted)):
            changes.append({"resourceId": rid, "changeType": "Ignore", "before": current[rid]})
        return changes


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up (timeouts, retries) are normal here


class ArmError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _handler(arm: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        # -------------------------------------------------------- plumbing
        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, code: str, message: str, headers=None) -> None:
            self._send(status, {"error": {"code": code, "message": message}}, headers)

        def _async(self, status: int, kind: str, finish, header: str, body=None) -> None:
            op_id = uuid.uuid4().hex
            with arm.lock:
                arm.ops[op_id] = AsyncOp(kind, arm.polls, finish)
            url = f"{arm.url}/subscriptions/{arm.subscription}/operationresults/{op_id}"
            self._send(status, body, {header: url, "Retry-After": "0"})

        def _dispatch(self, method: str) -> None:
            host = (self.headers.get("Host") or "").split(":")[0]
            path = urlsplit(self.path).path
            with arm.lock:
                arm.requests.append((method, path))
            if host.endswith("." + APP_DOMAIN):
                self._app_traffic(method, host)
                return
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._body()
                self._error(401, "AuthenticationFailed", "The access token is invalid.")
                return
            with arm.lock:
                for fragment, left in list(arm.throttle.items()):
                    if left > 0 and fragment in path:
                        arm.throttle[fragment] = left - 1
                        self._body()
                        self._error(
                            429,
                            "TooManyRequests",
                            "Rate limit exceeded; retry after 1 second.",
                            {"Retry-After": "1"},
                        )
                        return
            body = self._body()
            payload = json.loads(body) if body else {}
            try:
                self._route(method, path, payload)
            except ArmError as exc:
                self._error(exc.status, exc.code, exc.message)

        def _route(self, method: str, path: str, payload: dict[str, Any]) -> None:
            routes = [
                ("GET", SUB + r"/operationresults/(?P<op>\w+)", self._poll),
                ("GET", DEP + r"/operations", self._operations),
                ("GET", DEP + r"/operationStatuses/(?P<op>\w+)", self._poll_status),
                ("POST", DEP + r"/whatIf", self._what_if),
                (
                    "POST",
                    SUB + r"/providers/Microsoft\.Resources/deployments/(?P<name>[^/]+)/whatIf",
                    self._what_if_subscription,
                ),
                ("PUT", DEP, self._put_deployment),
                ("GET", DEP, self._get_deployment),
                ("GET", RG + r"/resources", self._list_resources),
                ("POST", SITE + r"/slotsswap", self._swap),
                ("GET", SITE + r"/slots/(?P<slot>[^/]+)", self._get_site),
                ("GET", SITE, self._get_site),
                ("PUT", RG, self._put_group),
                ("GET", RG, self._get_group),
                ("DELETE", RG, self._delete_group),
            ]
            for verb, pattern, fn in routes:
                match = re.fullmatch(pattern, path)
                if verb == method and match:
                    fn(payload=payload, **match.groupdict())
                    return
            raise ArmError(404, "NotFound", f"fake ARM has no route for {method} {path}")

        # -------------------------------------------------------- resource groups
        def _group_body(self, rg: str) -> dict[str, Any]:
            group = arm.groups[rg]
            return {
                "id": f"/subscriptions/{arm.subscription}/resourceGroups/{rg}",
                "name": rg,
                "type": "Microsoft.Resources/resourceGroups",
                "location": group["location"],
                "tags": group.get("tags") or {},
                "properties": {"provisioningState": "Succeeded"},
            }

        def _put_group(self, payload, sub, rg) -> None:
            with arm.lock:
                created = rg not in arm.groups
                arm.groups[rg] = {"location": payload["location"], "tags": payload.get("tags")}
                arm.resources.setdefault(rg, {})
            self._send(201 if created else 200, self._group_body(rg))

        def _get_group(self, payload, sub, rg) -> None:
            if rg not in arm.groups:
                raise ArmError(
                    404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
                )
            self._send(200, self._group_body(rg))

        def _delete_group(self, payload, sub, rg) -> None:
            if rg not in arm.groups:
                raise ArmError(
                    404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
                )

            def finish() -> None:
                arm.groups.pop(rg, None)
                arm.resources.pop(rg, None)
                for name in [n for n, s in arm.sites.items() if s.rg == rg]:
                    arm.sites.pop(name)
                return None

            self._async(202, "delete-rg", finish, "Location")

        def _list_resources(self, payload, sub, rg) -> None:
            items = [
                {"id": r["id"], "name": r["name"], "type": r["type"], "location": "westeurope"}
                for r in arm.resources.get(rg, {}).values()
            ]
            self._send(200, {"value": items})

        # -------------------------------------------------------- deployments
        def _what_if(self, payload, sub, rg, name) -> None:
            if rg not in arm.groups:
                raise ArmError(
                    404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
                )
            if arm.what_if_error is not None:
                # ARM answers some failed what-ifs with HTTP 200 and an error body
                self._send(200, {"status": "Failed", "error": arm.what_if_error})
                return
            props = payload["properties"]
            wanted, _ = arm.expand(rg, props["template"], props.get("parameters") or {})

            def finish() -> dict[str, Any]:
                changes = arm.what_if_changes(rg, wanted)
                return {"status": "Succeeded", "properties": {"changes": changes}}

            self._async(202, "whatif", finish, "Location")

        def _what_if_subscription(self, payload, sub, name) -> None:
            """Subscription scope: a resource group plus a nested (inner-scope) deployment."""
            if "location" not in payload:
                raise ArmError(400, "InvalidDeployment", "location is required")
            if arm.what_if_error is not None:
                self._send(200, {"status": "Failed", "error": arm.what_if_error})
                return
            resources = payload["properties"]["template"].get("resources") or []
            changes: list[dict] = []
            for res in resources:
                if res["type"] == "Microsoft.Resources/resourceGroups":
                    rg = res["name"]
                    rid = f"/subscriptions/{arm.subscription}/resourceGroups/{rg}"
                    if rg in arm.groups:
                        changes.append({"resourceId": rid, "changeType": "NoChange"})
                    else:
                        changes.append({"resourceId": rid, "changeType": "Create", "after": res})
            for res in resources:
                if res["type"] == "Microsoft.Resources/deployments":
                    props = res["properties"]
                    if (props.get("expressionEvaluationOptions") or {}).get("scope") != "inner":
                        raise ArmError(400, "InvalidTemplate", "fake ARM needs inner scope")
                    rg = res["resourceGroup"]
                    wanted, _ = arm.expand(rg, props["template"], props.get("parameters") or {})
                    changes.extend(arm.what_if_changes(rg, wanted))

            def finish() -> dict[str, Any]:
                return {"status": "Succeeded", "properties": {"changes": changes}}

            self._async(202, "whatif", finish, "Location")

        def _deployment_body(self, rg: str, name: str) -> dict[str, Any]:
            dep = arm.deployments[(rg, name)]
            return {
                "id": f"/subscriptions/{arm.subscription}/resourceGroups/{rg}/providers/"
                f"Microsoft.Resources/deployments/{name}",
                "name": name,
                "type": "Microsoft.Resources/deployments",
                "tags": dep.get("tags") or {},
                "properties": {
                    "provisioningState": dep["state"],
                    "mode": "Incremental",
                    "timestamp": "2026-01-01T00:00:00Z",
                    "outputs": dep["outputs"] if dep["state"] == "Succeeded" else None,
                    "error": dep.get("error"),
                },
            }

        def _put_deployment(self, payload, sub, rg, name) -> None:
            if rg not in arm.groups:
                raise ArmError(
                    404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."
                )
            props = payload["properties"]
            wanted, outputs = arm.expand(rg, props["template"], props.get("parameters") or {})
            failing = arm.fail_resource
            with arm.lock:
                arm.deployments[(rg, name)] = {
                    "state": "Running",
                    "outputs": outputs,
                    "resources": wanted,
                    "tags": payload.get("tags"),
                    "failing": failing,
                }

            def finish() -> dict[str, Any]:
                dep = arm.deployments[(rg, name)]
                if failing:
                    dep["state"] = "Failed"
                    dep["error"] = {
                        "code": "DeploymentFailed",
                        "message": "At least one resource deployment operation failed.",
                    }
                    return {"status": "Failed", "error": dep["error"]}
                dep["state"] = "Succeeded"
                arm.resources.setdefault(rg, {}).update(wanted)
                for res in wanted.values():
                    if res["type"] == "Microsoft.Web/sites":
                        arm.sites.setdefault(res["name"], Site(rg, res["name"]))
                return {"status": "Succeeded"}

            op_id = uuid.uuid4().hex
            with arm.lock:
                arm.ops[op_id] = AsyncOp("deployment", arm.polls, finish)
            status_url = (
                f"{arm.url}/subscriptions/{sub}/resourcegroups/{rg}/providers/"
                f"Microsoft.Resources/deployments/{name}/operationStatuses/{op_id}"
            )
            body = self._deployment_body(rg, name)
            body["properties"]["provisioningState"] = "Accepted"
            self._send(201, body, {"Azure-AsyncOperation": status_url, "Retry-After": "0"})

        def _get_deployment(self, payload, sub, rg, name) -> None:
            if (rg, name) not in arm.deployments:
                raise ArmError(
                    404, "DeploymentNotFound", f"Deployment '{name}' could not be found."
                )
            self._send(200, self._deployment_body(rg, name))

        def _operations(self, payload, sub, rg, name) -> None:
            dep = arm.deployments.get((rg, name))
            if dep is None:
                raise ArmError(
                    404, "DeploymentNotFound", f"Deployment '{name}' could not be found."
                )
            items = []
            for i, res in enumerate(dep["resources"].values()):
                state = "Running" if dep["state"] == "Running" else "Succeeded"
                status: dict[str, Any] = {}
                failing = dep.get("failing")
                if dep["state"] == "Failed" and failing and failing["name"] == res["name"]:
                    state = "Failed"
                    status = {
                        "status": "Failed",
                        "error": {"code": failing["code"], "message": failing["message"]},
                    }
                items.append(
                    {
                        "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft."
                        f"Resources/deployments/{name}/operations/{i:016d}",
                        "operationId": f"{i:016d}",
                        "properties": {
                            "provisioningOperation": "Create",
                            "provisioningState": state,
                            "timestamp": "2026-01-01T00:00:00Z",
                            "statusCode": "OK" if state != "Failed" else "BadRequest",
                            "statusMessage": status or None,
                            "targetResource": {
                                "id": res["id"],
                                "resourceType": res["type"],
                                "resourceName": res["name"],
                            },
                        },
                    }
                )
            self._send(200, {"value": items})

        def _poll(self, payload, sub, op) -> None:
            # Azure-AsyncOperation status URLs and Location URLs both land here
            self._poll_op(op)

        def _poll_status(self, payload, sub, rg, name, op) -> None:
            self._poll_op(op)

        def _poll_op(self, op_id: str) -> None:
            with arm.lock:
                op = arm.ops.get(op_id)
                if op is None:
                    raise ArmError(404, "NotFound", f"operation {op_id} not found")
                if not op.done and op.polls_left > 0:
                    op.polls_left -= 1
                    running = True
                else:
                    if not op.done:
                        op.result = op.finish()
                        op.done = True
                    running = False
            if op.kind == "deployment":
                self._send(200, {"status": "Running"} if running else op.result)
            elif running:
                self._send(202, None, {"Location": f"{arm.url}{self.path}", "Retry-After": "0"})
            elif op.result is None:
                self._send(200, None)
            else:
                self._send(200, op.result)

        # -------------------------------------------------------- web apps
        def _site_body(self, site: Site, slot: str) -> dict[str, Any]:
            name = site.name if slot == "production" else f"{site.name}/{slot}"
            return {
                "id": f"/subscriptions/{arm.subscription}/resourceGroups/{site.rg}/providers/"
                f"Microsoft.Web/sites/{name}",
                "name": name,
                "type": "Microsoft.Web/sites" + ("" if slot == "production" else "/slots"),
                "location": "West Europe",
                "kind": "app,linux",
                "properties": {
                    "state": "Running",
                    "defaultHostName": site.host(slot),
                    "hostNames": [site.host(slot)],
                    "enabledHostNames": [site.host(slot), site.host(slot, scm=True)],
                    "hostNameSslStates": [
                        {"name": site.host(slot), "hostType": "Standard", "sslState": "Disabled"},
                        {
                            "name": site.host(slot, scm=True),
                            "hostType": "Repository",
                            "sslState": "Disabled",
                        },
                    ],
                    "siteConfig": {"healthCheckPath": "/ready"},
                },
            }

        def _find_site(self, rg: str, name: str) -> Site:
            site = arm.sites.get(name)
            if site is None or site.rg != rg:
                raise ArmError(
                    404,
                    "ResourceNotFound",
                    f"The Resource 'Microsoft.Web/sites/{name}' under resource group "
                    f"'{rg}' was not found.",
                )
            return site

        def _get_site(self, payload, sub, rg, site, slot: str = "production") -> None:
            found = self._find_site(rg, site)
            self._send(200, self._site_body(found, slot))

        def _swap(self, payload, sub, rg, site) -> None:
            found = self._find_site(rg, site)
            source = payload.get("targetSlot")
            if source not in found.backends or "production" not in found.backends:
                raise ArmError(400, "BadRequest", f"Slot '{source}' does not exist.")
            if arm.refuse_swap is not None and found.swaps + 1 == arm.refuse_swap:
                raise ArmError(
                    409,
                    "Conflict",
                    "Cannot modify this site because another operation is in progress.",
                )

            def finish() -> None:
                with arm.lock:
                    backends = found.backends
                    backends["production"], backends[source] = (
                        backends[source],
                        backends["production"],
                    )
                    found.swaps += 1
                if arm.on_swap:
                    arm.on_swap(found)
                return None

            self._async(202, "swap", finish, "Location")

        # -------------------------------------------------------- app and Kudu traffic
        def _slot_for_host(self, host: str) -> tuple[Site, str, bool] | None:
            for site in arm.sites.values():
                others = [s for s in site.backends if s not in ("production", "staging")]
                for slot in ("production", "staging", *others):
                    if host == site.host(slot):
                        return site, slot, False
                    if host == site.host(slot, scm=True):
                        return site, slot, True
            return None

        def _app_traffic(self, method: str, host: str) -> None:
            body = self._body()
            found = self._slot_for_host(host)
            if found is None:
                self._error(404, "SiteNotFound", f"no site for host {host}")
                return
            site, slot, scm = found
            if scm:
                self._kudu(method, site, slot, body)
                return
            backend = site.backends.get(slot)
            if backend is None:
                self._error(503, "SlotNotRunning", f"no process serves {host}")
                return
            request = urllib.request.Request(backend + self.path, data=body or None, method=method)
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, data = response.status, response.read()
                    ctype = response.headers.get("Content-Type", "application/json")
            except urllib.error.HTTPError as exc:
                status, data = exc.code, exc.read()
                ctype = exc.headers.get("Content-Type", "application/json")
            except OSError:  # the slot's process is down: App Service answers an HTML 503
                page = b"<html><body><h1>:( Application Error</h1></body></html>"
                self.send_response(503)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _kudu(self, method: str, site: Site, slot: str, body: bytes) -> None:
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._error(401, "Unauthorized", "Kudu needs a bearer token")
                return
            path = urlsplit(self.path)
            if method == "POST" and path.path == "/api/zipdeploy":
                try:
                    zipfile.ZipFile(io.BytesIO(body)).testzip()
                except zipfile.BadZipFile:
                    self._error(400, "BadZip", "the package is not a zip file")
                    return
                with arm.lock:
                    arm.zip_deploys.append((site.name, slot, body))
                status = {
                    "id": uuid.uuid4().hex,
                    "status": 4,
                    "complete": True,
                    "status_text": "",
                    "message": "Created via a push deployment",
                }
                try:
                    if arm.on_zip_deploy:
                        arm.on_zip_deploy(site, slot, body)
                except Exception as exc:  # the deployment failed on the "host"
                    status.update(status=3, status_text=str(exc))
                with arm.lock:
                    arm.kudu_status = status  # type: ignore[attr-defined]
                async_ = parse_qs(path.query).get("isAsync") == ["true"]
                if async_:
                    location = f"http://{site.host(slot, scm=True)}/api/deployments/latest"
                    self._send(202, None, {"Location": location})
                else:
                    self._send(200 if status["status"] == 4 else 500, status)
                return
            if method == "GET" and path.path == "/api/deployments/latest":
                self._send(200, getattr(arm, "kudu_status", {"status": 0, "complete": False}))
                return
            self._error(404, "NotFound", f"fake Kudu has no route for {method} {path.path}")

    return Handler


def extract(body: bytes, target: Path) -> None:
    """Unpack a zip deploy into ``target`` (what Kudu does with wwwroot)."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        archive.extractall(target)
