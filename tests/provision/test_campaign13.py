"""Session 13: what-if change types, token expiry during long polls, swap conflicts.

ARM is the local fake server (tests/provision/fake_arm.py); where a test needs another
answer from it, the fake's prediction or handler is replaced for that test only.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from tests.provision.fake_arm import TOKEN, FakeArm
from tests.provision.test_deploy import slots, template_db  # noqa: F401 (fixtures)

RG = "emrsim-staging-rg"


def _predict(azure: FakeArm, change: Any) -> None:
    """What-if answers as the real fake does, with ``change(list)`` applied to its changes."""
    original = azure.what_if_changes

    def what_if_changes(rg: str, wanted: dict[str, dict[str, Any]]) -> list[dict]:
        return change(original(rg, wanted))

    azure.what_if_changes = what_if_changes  # type: ignore[method-assign]


def _plan(cli):
    result = cli("provision", "plan", "--env", "staging", "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def _applied(cli) -> None:
    assert cli("provision", "apply", "--env", "staging", "--yes").exit_code == 0


def test_unsupported_change_is_not_reported_as_in_sync(cli, azure: FakeArm) -> None:
    """what-if says Unsupported when it cannot predict a resource (e.g. a nested template it
    cannot expand): the plan cannot promise 'no changes', so exit 4 with the reason."""
    _applied(cli)
    reason = "The resource cannot be evaluated: unresolved reference in a nested deployment."

    def unsupported(changes: list[dict]) -> list[dict]:
        first = changes[0]
        changes[0] = {
            "resourceId": first["resourceId"],
            "changeType": "Unsupported",
            "unsupportedReason": reason,
        }
        return changes

    _predict(azure, unsupported)
    result, plan = _plan(cli)
    assert result.exit_code == 4, result.stderr
    assert plan["pending"] == 1 and plan["unpredicted"] == 1
    first = plan["changes"][0]
    assert first["change"] == "Unsupported" and first["reason"] == reason
    assert plan["summary"]["Unsupported"] == 1
    # without --json: not "1 change(s) pending" (what-if predicted none), the reason shown
    shown = cli("provision", "plan", "--env", "staging")
    assert shown.exit_code == 4
    assert "change(s) pending" not in shown.stderr
    assert "no predicted changes in staging, but 1 resource(s) what-if cannot predict" in (
        shown.stderr
    )
    assert "1 what-if cannot predict" in shown.stdout
    assert "nested deployment" in shown.stdout.replace("\n", " ")


def test_unknown_change_type_is_unpredicted_and_resource_level_noeffect_is_none(
    cli, azure: FakeArm
) -> None:
    _applied(cli)

    def retype(changes: list[dict]) -> list[dict]:
        changes[0]["changeType"] = "Replace"  # a type a future API version may add
        changes[0]["delta"] = []
        changes[1]["changeType"] = "NoEffect"
        changes[2]["changeType"] = "ignore"  # casing is not trusted
        return changes

    _predict(azure, retype)
    result, plan = _plan(cli)
    assert result.exit_code == 4, result.stderr
    assert plan["pending"] == 1 and plan["unpredicted"] == 1
    kinds = {c["change"] for c in plan["changes"]}
    assert {"Replace", "NoEffect", "Ignore"} <= kinds
    replaced = next(c for c in plan["changes"] if c["change"] == "Replace")
    assert "'Replace' is not known" in replaced["reason"]


def test_only_noeffect_and_ignore_is_in_sync(cli, azure: FakeArm) -> None:
    _applied(cli)

    def quiet(changes: list[dict]) -> list[dict]:
        for i, change in enumerate(changes):
            change["changeType"] = "NoEffect" if i % 2 else "Ignore"
        return changes

    _predict(azure, quiet)
    result, plan = _plan(cli)
    assert result.exit_code == 0, result.stderr
    assert plan["pending"] == 0 and plan["unpredicted"] == 0


def test_extensible_resources_without_resource_id_stay_apart(cli, azure: FakeArm) -> None:
    """Bicep extension resources (e.g. Microsoft Graph) come back without resourceId, only a
    symbolic name: each is its own change (they were merged under an empty id, name '')."""
    _applied(cli)

    def extension(changes: list[dict]) -> list[dict]:
        for name in ("appGroup", "appRegistration"):
            changes.append(
                {
                    "symbolicName": name,
                    "resourceType": "Microsoft.Graph/groups",
                    "changeType": "Create",
                }
            )
        return changes

    _predict(azure, extension)
    result, plan = _plan(cli)
    assert result.exit_code == 4, result.stderr
    created = [c for c in plan["changes"] if c["change"] == "Create"]
    assert sorted(c["name"] for c in created) == ["symbolic:appGroup", "symbolic:appRegistration"]
    assert {c["resource_type"] for c in created} == {"Microsoft.Graph/groups"}
    assert len({c["resource_id"] for c in created}) == 2


# ------------------------------------------------------------------ token expiry
class Tokens:
    """An App Service managed identity endpoint (IDENTITY_ENDPOINT) handing out short-lived
    tokens, and ARM's rule that an expired token gets 401 ExpiredAuthenticationToken."""

    def __init__(self, lifetime: float) -> None:
        self.lifetime = lifetime
        self.issued: dict[str, float] = {}  # token -> monotonic expiry
        self.expired_uses = 0

    def install(self, azure: FakeArm, monkeypatch) -> None:
        tokens = self
        base: Any = azure.server.RequestHandlerClass

        class WithIdentity(base):  # type: ignore[misc, valid-type]
            def _dispatch(self, method: str) -> None:
                path = self.path.split("?")[0]
                if path == "/msi/token":
                    self._body()
                    if self.headers.get("X-IDENTITY-HEADER") != "identity-secret":
                        self._error(400, "BadRequest", "missing X-IDENTITY-HEADER")
                        return
                    token = f"mi-{uuid.uuid4().hex}"
                    with azure.lock:
                        tokens.issued[token] = time.monotonic() + tokens.lifetime
                    self._send(
                        200,
                        {
                            "access_token": token,
                            "expires_on": str(int(time.time() + tokens.lifetime)),
                            "resource": "https://management.azure.com/",
                            "token_type": "Bearer",
                        },
                    )
                    return
                auth = self.headers.get("Authorization") or ""
                token = auth.removeprefix("Bearer ")
                expiry = tokens.issued.get(token)
                if expiry is not None:
                    if time.monotonic() > expiry:
                        with azure.lock:
                            tokens.expired_uses += 1
                        self._body()
                        self._error(
                            401,
                            "ExpiredAuthenticationToken",
                            "The access token expiry UTC time is earlier than current UTC time.",
                            {
                                "WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                                'microsoftonline.com/common", error="invalid_token", '
                                'error_description="The access token has expired."'
                            },
                        )
                        return
                    del self.headers["Authorization"]
                    self.headers["Authorization"] = f"Bearer {TOKEN}"
                super()._dispatch(method)

        azure.server.RequestHandlerClass = WithIdentity
        monkeypatch.delenv("EMROPS_AZURE_ACCESS_TOKEN", raising=False)
        for name in (
            "AZURE_CLIENT_ID",
            "AZURE_TENANT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
            "MSI_ENDPOINT",
            "MSI_SECRET",
            "AZURE_TOKEN_CREDENTIALS",
        ):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("IDENTITY_ENDPOINT", f"{azure.url}/msi/token")
        monkeypatch.setenv("IDENTITY_HEADER", "identity-secret")


def test_a_long_deployment_outlives_its_first_token(cli, azure: FakeArm, monkeypatch) -> None:
    """Each ARM request carries a live token: the deployment keeps polling after the
    first token expired (an access token lives 60-90 min; a deployment can run longer)."""
    tokens = Tokens(lifetime=1.0)
    tokens.install(azure, monkeypatch)
    azure.polls = 40  # the deployment runs for ~40 polls of 0.05 s plus operation listings
    result = cli("provision", "apply", "--env", "staging", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["state"] == "Succeeded"
    assert tokens.expired_uses == 0
    assert len(tokens.issued) >= 2  # the first token did expire during the run


def _expire_after_deployment_starts(azure: FakeArm, after: float) -> None:
    """ARM answers 401 ExpiredAuthenticationToken to every request ``after`` seconds after
    the deployment was created (the fixed token of EMROPS_AZURE_ACCESS_TOKEN ran out)."""
    base: Any = azure.server.RequestHandlerClass
    cutoff: list[float] = []

    class Expiring(base):  # type: ignore[misc, valid-type]
        def _dispatch(self, method: str) -> None:
            if cutoff and time.monotonic() > cutoff[0] and "Authorization" in self.headers:
                self._body()
                self._error(
                    401,
                    "ExpiredAuthenticationToken",
                    "The access token expiry UTC time '12/5/2026 13:00:00' is earlier than "
                    "current UTC time '12/5/2026 14:10:00'.",
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
                return
            if method == "PUT" and "/deployments/" in self.path and not cutoff:
                cutoff.append(time.monotonic() + after)
            super()._dispatch(method)

    azure.server.RequestHandlerClass = Expiring


def test_a_fixed_token_that_expires_mid_deployment_says_the_deployment_runs_on(
    cli, azure: FakeArm
) -> None:
    _expire_after_deployment_starts(azure, 0.3)
    azure.polls = 40
    result = cli("provision", "apply", "--env", "staging", "--yes")
    assert result.exit_code == 1
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    assert error.startswith("Error: lost track of deployment emrops-staging-")
    assert "ExpiredAuthenticationToken" in error
    assert "was NOT cancelled and may still be running in Azure" in error
    assert "EMROPS_AZURE_ACCESS_TOKEN holds one fixed token" in result.stderr
    assert "az deployment group show -g emrsim-staging-rg -n emrops-staging-" in result.stderr
    assert "run `az login`, or set" not in result.stderr  # it would not help


def _jwt(exp: float) -> str:
    import base64

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'exp': int(exp)})}.c2lnbmF0dXJl"


def test_an_expired_fixed_token_is_refused_before_it_is_sent(
    cli, azure: FakeArm, monkeypatch
) -> None:
    monkeypatch.setenv("EMROPS_AZURE_ACCESS_TOKEN", _jwt(time.time() - 120))
    azure.requests.clear()
    result = cli("provision", "plan", "--env", "staging")
    assert result.exit_code == 1
    assert "the token in EMROPS_AZURE_ACCESS_TOKEN expired at " in result.stderr
    assert "EMROPS_AZURE_ACCESS_TOKEN holds one fixed token" in result.stderr
    assert azure.requests == []  # never sent


# ------------------------------------------------------------------ Kudu and slot swaps
SITE = "emrsim-production"


def _slow_kudu(azure: FakeArm, seconds: float, answers: list[int] | None = None) -> None:
    """Kudu's deployment status says 'running' for ``seconds`` after the zip arrived (the
    host runs the build); ``answers`` are HTTP statuses sent first instead of the status."""
    base: Any = azure.server.RequestHandlerClass
    started: list[float] = []
    pending = list(answers or [])

    class SlowKudu(base):  # type: ignore[misc, valid-type]
        def _kudu(self, method: str, site: Any, slot: str, body: bytes) -> None:
            path = self.path.split("?")[0]
            if method == "POST" and path == "/api/zipdeploy":
                started.append(time.monotonic())
            elif method == "GET" and path == "/api/deployments/latest":
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._error(401, "Unauthorized", "Kudu needs a bearer token")
                    return
                if pending:
                    status = pending.pop(0)
                    self._error(status, "Unavailable", "the scm site is restarting")
                    return
                if started and time.monotonic() < started[0] + seconds:
                    self._send(200, {"complete": False, "status": 1, "progress": "pip install"})
                    return
            super()._kudu(method, site, slot, body)

    azure.server.RequestHandlerClass = SlowKudu


def _zip(tmp_path) -> str:
    import zipfile

    path = tmp_path / "app.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("requirements.txt", "fastapi==0.115.0\n")
    return str(path)


@pytest.mark.usefixtures("slots")
def test_a_zip_deploy_that_outlives_its_token_is_followed_to_the_end(
    cli, azure: FakeArm, monkeypatch, tmp_path
) -> None:
    """Kudu's status is polled with a token per request (the one taken for the upload had
    expired: 401 was read as 'still running' until the wait ran out)."""
    _slow_kudu(azure, seconds=2.5)
    tokens = Tokens(lifetime=1.0)
    tokens.install(azure, monkeypatch)
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "8s")
    result = cli(
        "deploy", "push", "--env", "production", "--site", SITE, "--package", _zip(tmp_path)
    )
    assert result.exit_code == 0, result.stderr
    assert tokens.expired_uses == 0
    assert len(azure.zip_deploys) == 1


def test_kudu_refusing_the_status_poll_ends_the_push_at_once(
    cli, azure: FakeArm, monkeypatch, tmp_path
) -> None:
    azure.add_site("emrsim-production-rg", SITE)
    _slow_kudu(azure, seconds=60, answers=[503, 503])
    base: Any = azure.server.RequestHandlerClass

    class Forbidden(base):  # type: ignore[misc, valid-type]
        def _kudu(self, method: str, site: Any, slot: str, body: bytes) -> None:
            if method == "GET" and azure.count("GET", "/api/deployments/latest") > 3:
                self._error(403, "Forbidden", "The identity has no access to the scm site.")
                return
            super()._kudu(method, site, slot, body)

    azure.server.RequestHandlerClass = Forbidden
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "30s")
    started = time.monotonic()
    result = cli(
        "deploy", "push", "--env", "production", "--site", SITE, "--package", _zip(tmp_path)
    )
    assert time.monotonic() - started < 15
    assert result.exit_code == 1
    assert (
        "cannot follow the zip deploy on emrsim-production-staging.scm.azurewebsites.net: "
        "HTTP 403" in result.stderr
    )
    assert azure.count("GET", "/api/deployments/latest") == 4  # 2 x 503 retried, 1 running


def _swap_answers(azure: FakeArm, answers: list[tuple[int, str, dict[str, str]]]) -> None:
    """The first POSTs of a slot swap get these answers (status, code, headers) instead."""
    base: Any = azure.server.RequestHandlerClass
    pending = list(answers)

    class Refusing(base):  # type: ignore[misc, valid-type]
        def _swap(self, payload: Any, sub: str, rg: str, site: str) -> None:
            if pending:
                status, code, headers = pending.pop(0)
                self._error(
                    status,
                    code,
                    "Cannot modify this site because another operation is in progress.",
                    headers,
                )
                return
            super()._swap(payload, sub, rg, site)

    azure.server.RequestHandlerClass = Refusing


def _deploy_swap(cli):
    return cli("deploy", "swap", "--env", "production", "--site", SITE)


def test_a_conflicting_swap_waits_as_arm_says_then_swaps(cli, azure: FakeArm, slots) -> None:  # noqa: F811
    _swap_answers(azure, [(409, "Conflict", {"Retry-After": "1"})] * 2)
    started = time.monotonic()
    result = _deploy_swap(cli)
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started >= 2.0  # Retry-After honoured twice
    assert azure.count("POST", "/slotsswap") == 3
    assert slots["site"].swaps == 1
    assert slots["site"].backends["production"] == slots["staging"].url


def test_a_swap_refused_by_conflicts_throughout_is_busy_and_swaps_nothing(
    cli,
    azure: FakeArm,
    slots,  # noqa: F811
) -> None:
    blue = slots["production"]
    _swap_answers(azure, [(409, "Conflict", {})] * 10)
    result = _deploy_swap(cli)
    assert result.exit_code == 75, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "was refused 6 time(s): Conflict: Cannot modify this site" in error
    assert error.endswith("nothing was swapped")
    assert azure.count("POST", "/slotsswap") == 6
    assert slots["site"].swaps == 0 and slots["site"].backends["production"] == blue.url


def test_throttled_swap_honours_retry_after(cli, azure: FakeArm, slots) -> None:  # noqa: F811
    azure.throttle["/slotsswap"] = 2  # 429 with Retry-After: 1
    started = time.monotonic()
    result = _deploy_swap(cli)
    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started >= 2.0
    assert slots["site"].swaps == 1


def test_swap_back_retries_a_conflict(cli, azure: FakeArm, slots) -> None:  # noqa: F811
    """Production fails after the swap; the swap back meets one 409 and is tried again."""
    green = slots["staging"]
    base: Any = azure.server.RequestHandlerClass
    refused: list[int] = []

    class ConflictOnSwapBack(base):  # type: ignore[misc, valid-type]
        def _swap(self, payload: Any, sub: str, rg: str, site: str) -> None:
            if slots["site"].swaps == 1 and not refused:  # type: ignore[attr-defined]
                refused.append(1)
                self._error(409, "Conflict", "Another operation is in progress.")
                return
            super()._swap(payload, sub, rg, site)

    azure.server.RequestHandlerClass = ConflictOnSwapBack

    def break_new_production(site: Any) -> None:
        if site.swaps == 1:
            green.stop()

    azure.on_swap = break_new_production
    result = _deploy_swap(cli)
    assert result.exit_code == 3, result.stderr
    assert "swapped back to the previous version" in result.stderr
    assert refused == [1] and slots["site"].swaps == 2  # type: ignore[attr-defined]
    assert slots["site"].backends["production"] == slots["production"].url  # type: ignore


def test_a_swap_whose_warm_up_fails_exits_3_and_is_not_swapped_back(
    cli,
    azure: FakeArm,
    slots,  # noqa: F811
) -> None:
    """App Service's own warm-up (WEBSITE_SWAP_WARMUP_PING_PATH) gives up on the staging
    slot: the swap operation fails and App Service cancels it; emrops says so (exit 3)."""
    blue = slots["production"]
    base: Any = azure.server.RequestHandlerClass
    message = (
        "Cannot swap site slots for site 'emrsim-production' because the 'staging' slot did "
        "not respond to http ping. (CannotSwapSiteSlots_SiteSlotNotRespondingToHttpPing)"
    )

    class WarmupFails(base):  # type: ignore[misc, valid-type]
        def _swap(self, payload: Any, sub: str, rg: str, site: str) -> None:
            location = f"{azure.url}/subscriptions/{sub}/operationresults/warmupfailed"
            self._send(202, None, {"Location": location, "Retry-After": "0"})

        def _dispatch(self, method: str) -> None:
            if self.path.endswith("/operationresults/warmupfailed"):
                self._body()
                self._error(409, "Conflict", message)
                return
            super()._dispatch(method)

    azure.server.RequestHandlerClass = WarmupFails
    result = _deploy_swap(cli)
    assert result.exit_code == 3, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "App Service's warm-up of the staging slot failed: Conflict: Cannot swap" in error
    assert "swap back" not in result.stderr
    assert azure.count("POST", "/slotsswap") == 1
    assert slots["site"].swaps == 0 and slots["site"].backends["production"] == blue.url


def test_a_fixed_token_that_expires_while_a_group_is_deleted_says_the_delete_goes_on(
    cli, azure: FakeArm, tmp_path
) -> None:
    assert cli("provision", "apply", "--env", "staging", "--yes").exit_code == 0
    base: Any = azure.server.RequestHandlerClass
    cutoff: list[float] = []

    class Expiring(base):  # type: ignore[misc, valid-type]
        def _dispatch(self, method: str) -> None:
            if cutoff and time.monotonic() > cutoff[0] and "Authorization" in self.headers:
                self._body()
                self._error(401, "ExpiredAuthenticationToken", "The access token has expired.")
                return
            if method == "DELETE":
                cutoff.append(time.monotonic())
            super()._dispatch(method)

    azure.server.RequestHandlerClass = Expiring
    azure.polls = 40
    result = cli("provision", "destroy", "--env", "staging", "--yes")
    assert result.exit_code == 1, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error: "))
    assert error.startswith("Error: lost track of the deletion of emrsim-staging-rg: ")
    assert "was NOT cancelled: it may still be running in Azure" in error
    assert "EMROPS_AZURE_ACCESS_TOKEN holds one fixed token" in result.stderr
    assert "az group show -n emrsim-staging-rg" in result.stderr
    assert (tmp_path / ".emrops" / "outputs" / "staging.json").exists()


def test_a_swap_whose_polls_are_refused_is_reported_as_unknown_not_failed(
    cli,
    azure: FakeArm,
    slots,  # noqa: F811
) -> None:
    """The fixed token runs out right after ARM accepted the swap: emrops cannot know how it
    ended, so it says so (it was reported as a failed swap, which App Service cancels)."""
    base: Any = azure.server.RequestHandlerClass
    cutoff: list[float] = []

    class Expiring(base):  # type: ignore[misc, valid-type]
        def _dispatch(self, method: str) -> None:
            host = (self.headers.get("Host") or "").split(":")[0]
            if cutoff and not host.endswith(".azurewebsites.net"):
                self._body()
                self._error(401, "ExpiredAuthenticationToken", "The access token has expired.")
                return
            if method == "POST" and self.path.split("?")[0].endswith("/slotsswap"):
                cutoff.append(time.monotonic())
            super()._dispatch(method)

    azure.server.RequestHandlerClass = Expiring
    result = _deploy_swap(cli)
    assert result.exit_code == 1, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "the swap was accepted, then emrops lost track of it" in error
    assert "check which version production serves" in result.stderr
    assert azure.count("POST", "/slotsswap") == 1  # no swap back on a guess


def test_a_fixed_token_that_runs_out_during_a_kudu_build_is_a_clear_error(
    cli, azure: FakeArm, monkeypatch, tmp_path
) -> None:
    """The token was valid when the push began and runs out while Kudu builds: the next
    status poll cannot get a token (was: an unexpected ClientAuthenticationError)."""
    azure.add_site("emrsim-production-rg", SITE)
    _slow_kudu(azure, seconds=60)
    monkeypatch.setenv("EMROPS_AZURE_ACCESS_TOKEN", _jwt(time.time() + 1.5))
    base: Any = azure.server.RequestHandlerClass

    class AcceptsTheJwt(base):  # type: ignore[misc, valid-type]
        def _dispatch(self, method: str) -> None:
            if (self.headers.get("Authorization") or "").count(".") == 2:
                del self.headers["Authorization"]
                self.headers["Authorization"] = f"Bearer {TOKEN}"
            super()._dispatch(method)

    azure.server.RequestHandlerClass = AcceptsTheJwt
    monkeypatch.setenv("EMROPS_DEPLOY_READY_TIMEOUT", "20s")
    result = cli(
        "deploy", "push", "--env", "production", "--site", SITE, "--package", _zip(tmp_path)
    )
    assert result.exit_code == 1, result.stderr
    assert "unexpected" not in result.stderr.lower()
    assert "Error: no Azure token for the Kudu API: the token in EMROPS_AZURE_ACCESS_TOKEN " in (
        result.stderr
    )
    assert "EMROPS_AZURE_ACCESS_TOKEN holds one fixed token" in result.stderr
