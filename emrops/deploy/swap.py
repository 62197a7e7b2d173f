"""Blue-green on App Service: push to staging, swap with a health gate, swap back.

The database is shared by both slots, so a swap is refused unless the staging app
reports the schema revision the database has (its ``/ready`` is 200, which the sim
server only answers when its schema head equals the database's revision), and
production agrees. Rollback is the same swap again (App Service semantics).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops.config import Settings
from emrops.deploy.appservice import AppClient, Probe, Slot, slot_hosts, wait_ready
from emrops.deploy.package import Package, build_package
from emrops.errors import Busy, CheckFailed, EmropsError
from emrops.provision import arm
from emrops.provision.environments import Environment
from emrops.units import parse_duration

Report = Callable[[str], None]


class DeadlineReached(EmropsError):
    """``--timeout`` ran out before the command could finish (exit 1)."""


@dataclass
class Timing:
    """How long each wait may take. ``deadline`` (time.monotonic(), from ``--timeout``) bounds
    the whole command: every wait is cut to what is left of it, except a swap or swap-back
    already sent to Azure, which is always waited for."""

    window: float
    interval: float
    ready_timeout: float
    deadline: float | None = None

    def left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def cap(self, seconds: float) -> float:
        """``seconds`` cut to what is left before the deadline (never negative)."""
        return max(0.0, min(seconds, self.left()))

    def expired(self) -> bool:
        return self.left() <= 0

    @classmethod
    def from_settings(cls, settings: Settings, env: Environment, window: str | None) -> Timing:
        """--window > EMROPS_DEPLOY_* > [deploy] in the environment file > emrops.toml."""

        def pick(key: str, given: str | None = None) -> float:
            source = settings.sources.get(f"deploy.{key}", "default")
            if given:
                raw = given
            elif source.startswith(("env", "flag")) or key not in env.deploy:
                raw = settings.get(f"deploy.{key}")
            else:
                raw = env.deploy[key]
            return float(parse_duration(str(raw), what=f"deploy {key}"))

        return cls(pick("probe_window", window), pick("probe_interval"), pick("ready_timeout"))


@dataclass
class PushResult:
    environment: str
    site: str
    slot: str
    host: str
    package_sha256: str
    package_size: int
    ready: bool


@dataclass
class SwapResult:
    environment: str
    site: str
    swapped: bool
    swapped_back: bool
    schema_revision: str | None
    probes: int
    failures: list[str] = field(default_factory=list)


def push(
    settings: Settings,
    clients: arm.ArmClients,
    env: Environment,
    site: str,
    slot: str,
    timing: Timing,
    package: Path | None = None,
    report: Report | None = None,
) -> PushResult:
    """Zip-deploy the sim server to ``slot`` and wait for its ``/ready``."""
    say = report or (lambda _m: None)
    target = slot_hosts(clients, env.resource_group, site, slot)
    if package is None:
        built: Package = build_package(settings.state_dir / "deploy" / f"{env.name}-sim.zip")
        package = built.path
        say(f"packaged {built.files} files, {len(built.requirements)} pinned requirements")
    data = package.read_bytes()
    app = AppClient(settings, clients.credential)
    say(f"zip deploy {package.name} ({len(data)} bytes) to {target.scm_host}")
    app.zip_deploy(target, package, timing.ready_timeout, timing.interval)
    say(f"waiting for https://{target.host}/ready")
    probe = wait_ready(app, target.host, timing.ready_timeout, timing.interval)
    if not probe.ok:
        raise CheckFailed(
            f"{site}/{slot} did not become ready within {timing.ready_timeout:.0f}s: "
            f"{probe.summary}",
            hint="check the slot's logs (az webapp log tail) and its /ready",
        )
    return PushResult(
        env.name, site, slot, target.host, hashlib.sha256(data).hexdigest(), len(data), True
    )


CONFLICT_RETRIES = 5  # a 409 "another operation is in progress" is tried this often again
CONFLICT_MAX_WAIT_S = 30.0


class SwapConflict(Busy):
    """App Service refused the swap: another operation holds the site (exit 75)."""


class SwapFailed(EmropsError):
    """App Service ran the swap and reported it failed (it cancels a failed swap)."""


class SwapLostTrack(EmropsError):
    """ARM accepted the swap, then emrops could not follow it: its outcome is unknown."""


class SwapWarmupFailed(CheckFailed):
    """The swap's warm-up found the source slot not answering (exit 3)."""


_WARMUP_WORDS = ("http ping", "warm", "did not respond", "not responding")


def _swap(
    clients: arm.ArmClients, rg: str, site: str, timing: Timing | None = None, *, back: bool
) -> None:
    """One swap of staging and production, retrying 409 Conflict (another operation is in
    progress on the site) as ARM asks: after its Retry-After, else 2x the polling interval,
    doubling, at most CONFLICT_RETRIES times. The first swap also stops retrying at the
    deadline of ``--timeout``; a swap back never gives up early. 429 is retried by the SDK
    (it honours Retry-After). Raises SwapConflict when the conflicts outlast the retries,
    SwapWarmupFailed/SwapFailed when App Service ran the swap and it failed, EmropsError when
    emrops lost track of an accepted swap."""
    from azure.mgmt.web.models import CsmSlotEntity

    # with production, target_slot names the *source* slot (App Service semantics)
    entity = CsmSlotEntity(target_slot="staging", preserve_vnet=True)
    what = f"swapping {site} staging <-> production" + (" (swap back)" if back else "")
    delay = max(1.0, 2 * clients.polling_interval) if not clients.local else 0.05
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            poller = arm.call(
                what,
                lambda: clients.web.web_apps.begin_swap_slot_with_production(rg, site, entity),
            )
        except EmropsError as exc:
            cause = exc.__cause__
            if getattr(cause, "status_code", None) != 409:
                raise
            wait = min(CONFLICT_MAX_WAIT_S, _retry_after(cause) or delay)
            out_of_time = timing is not None and not back and timing.left() < wait
            if attempt == CONFLICT_RETRIES or out_of_time:
                if back:
                    raise
                raise SwapConflict(
                    f"{what} was refused {attempt + 1} time(s): {arm.arm_error_text(cause)}; "
                    f"nothing was swapped",
                    hint="another operation (a deployment, a restart, another swap) holds "
                    "the site: wait for it to finish, then run `emrops deploy swap` again",
                ) from cause
            time.sleep(wait)
            delay *= 2
            continue
        try:
            arm.call(what, poller.result)
        except EmropsError as exc:
            raise _swap_outcome(what, exc) from exc.__cause__
        return


def _swap_outcome(what: str, exc: EmropsError) -> EmropsError:
    """The error for a swap ARM accepted that did not end well. A refused poll (credentials)
    or a lost connection leaves its outcome unknown; any other answer is App Service's
    verdict on the swap, which it cancels when it fails (a warm-up failure: exit 3)."""
    from azure.core.exceptions import HttpResponseError

    cause = exc.__cause__
    refused = arm.is_auth_failure(cause) or getattr(cause, "status_code", None) == 403
    if isinstance(cause, HttpResponseError) and not refused:
        text = arm.arm_error_text(cause)
        if any(word in text.lower() for word in _WARMUP_WORDS):
            return SwapWarmupFailed(
                f"{what}: App Service's warm-up of the staging slot failed: {text}",
                hint="App Service cancels a swap whose warm-up fails: check that staging "
                "answers its warm-up path (WEBSITE_SWAP_WARMUP_PING_PATH), then swap again",
            )
        return SwapFailed(f"{what} failed: {text}")
    return SwapLostTrack(
        f"{what}: the swap was accepted, then emrops lost track of it: {exc.message}",
        hint="it may have completed: check which version production serves (its /ready, "
        "or the portal's Deployment slots) before swapping again",
    )


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    raw = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:  # an HTTP date: not worth parsing for a swap retry
        return None


def check_staging(app: AppClient, staging: Slot, production: Slot, timing: Timing) -> Probe:
    """Staging must be ready and on the database's schema revision; else CheckFailed."""
    budget = timing.cap(timing.ready_timeout)
    probe = wait_ready(app, staging.host, budget, timing.interval)
    if not probe.ok and budget < timing.ready_timeout:  # the deadline, not ready_timeout, ended it
        raise DeadlineReached(
            f"--timeout reached while waiting for staging {staging.host} to be ready "
            f"({probe.summary}); nothing was swapped",
            hint="raise --timeout, or fix staging first",
        )
    if not probe.ok:
        body = probe.body or {}
        raw = body.get("error")
        err: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if err.get("code") == "schema_mismatch":
            raise CheckFailed(
                f"swap refused: staging's schema is incompatible with the shared database: "
                f"{err.get('message')}",
                hint="migrate the database first (expand/contract), then push and swap again",
            )
        raise CheckFailed(
            f"swap refused: staging slot {staging.host} is not ready: {probe.summary}",
            hint="fix staging (emrops deploy push) before swapping",
        )
    current = app.probe(production.host)
    staging_rev = (probe.body or {}).get("schema_revision")
    if current.ok and (current.body or {}).get("schema_revision") != staging_rev:
        raise CheckFailed(
            f"swap refused: staging reports schema {staging_rev} but production reports "
            f"{(current.body or {}).get('schema_revision')}",
            hint="both slots share one database; finish the migration first",
        )
    return probe


def watch(app: AppClient, host: str, timing: Timing, report: Report) -> tuple[int, list[str]]:
    """Probe ``host`` for the window; stop at the first failure. (probes, failures)

    When ``--timeout`` ends before the window, that is a failure: production was not watched
    for as long as asked, so it is not declared healthy (the caller swaps back)."""
    deadline = time.monotonic() + timing.window
    probes = 0
    while True:
        if timing.expired():
            return probes, [f"--timeout reached after {probes} probe(s), before the window ended"]
        # a probe still unanswered when the window ends is a failure: the wait is cut there
        probe = app.probe(host, timeout=max(0.5, timing.cap(min(5.0, deadline - time.monotonic()))))
        probes += 1
        if not probe.ok:
            return probes, [probe.summary]
        if time.monotonic() + timing.interval > deadline:
            return probes, []
        if timing.left() < timing.interval:
            time.sleep(max(0.0, timing.left()))
            continue
        report(f"production ready ({probes} probes)")
        time.sleep(timing.interval)


def swap(
    clients: arm.ArmClients,
    app: AppClient,
    env: Environment,
    site: str,
    timing: Timing,
    report: Report | None = None,
) -> SwapResult:
    """Gate on staging, swap, watch production, and swap back if it fails (CheckFailed)."""
    say = report or (lambda _m: None)
    rg = env.resource_group
    staging = slot_hosts(clients, rg, site, "staging")
    production = slot_hosts(clients, rg, site, "production")
    say(f"checking staging {staging.host}")
    gate = check_staging(app, staging, production, timing)
    revision = (gate.body or {}).get("schema_revision")
    if timing.expired():
        raise DeadlineReached(
            "--timeout reached before the swap; nothing was swapped", hint="raise --timeout"
        )
    say(f"staging ready at schema {revision}; swapping into production")
    _swap(clients, rg, site, timing, back=False)  # once sent, always waited for
    say(f"watching {production.host} for {timing.window:.0f}s")
    probes, failures = watch(app, production.host, timing, say)
    result = SwapResult(env.name, site, True, False, revision, probes, failures)
    if failures:
        say(f"production failed: {failures[0]}; swapping back")
        try:
            _swap(clients, rg, site, back=True)  # runs whatever the deadline says
        except EmropsError as exc:
            # the worst case: production serves the version that just failed; say so plainly
            now = "may still run" if isinstance(exc, SwapLostTrack) else "still runs"
            raise EmropsError(
                f"production failed its health probe after the swap ({failures[0]}) and the "
                f"swap back FAILED: {exc.message}; production {now} the new version",
                hint=f"swap back now: `emrops deploy rollback --env {env.name} --site {site} "
                "--yes` (or swap the slots in the Azure portal)",
            ) from None
        result.swapped_back = True
        back = wait_ready(app, production.host, timing.ready_timeout, timing.interval)
        if not back.ok:
            raise CheckFailed(
                f"production failed its health probe after the swap ({failures[0]}); swapped "
                f"back, but the previous version is not ready either: {back.summary}",
                hint="inspect both slots (a shared dependency such as the database may be "
                "down); the new version is in the staging slot",
            )
        raise CheckFailed(
            f"production failed its health probe after the swap ({failures[0]}); "
            f"swapped back to the previous version",
            hint="the new version is in the staging slot again: inspect it there",
        )
    return result


def rollback(
    clients: arm.ArmClients,
    app: AppClient,
    env: Environment,
    site: str,
    timing: Timing,
    report: Report | None = None,
) -> SwapResult:
    """Swap staging and production again, then wait for production to be ready."""
    say = report or (lambda _m: None)
    production = slot_hosts(clients, env.resource_group, site, "production")
    say(f"swapping {site} back")
    _swap(clients, env.resource_group, site, timing, back=False)
    probe = wait_ready(app, production.host, timing.cap(timing.ready_timeout), timing.interval)
    if not probe.ok:
        raise CheckFailed(
            f"rolled back, but production is not ready: {probe.summary}",
            hint="inspect both slots; the swap can be repeated with `emrops deploy rollback`",
        )
    revision = (probe.body or {}).get("schema_revision")
    return SwapResult(env.name, site, True, False, revision, 1, [])
