"""``emrops deploy``: blue-green deployment of the sim server to App Service slots.

Exit codes: 0 ok, 1 error, 2 usage, 3 health gate failed (push not ready, swap refused,
or production failed after a swap and was swapped back).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from emrops.cli.app import JsonOpt, YesOpt, confirm, err_console, make_app, print_json, settings
from emrops.deploy import appservice, swap
from emrops.provision import arm
from emrops.provision.environments import load_environment
from emrops.units import parse_duration

app = make_app("Deploy the sim server to App Service slots (push, swap, rollback).")

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: staging or production.")]
SiteOpt = Annotated[
    str | None,
    typer.Option("--site", help="Web App name (default: siteName from `provision outputs`)."),
]


def _say(json_out: bool):
    return (lambda _m: None) if json_out else (lambda m: err_console.print(m))


@app.command("push")
def push_cmd(
    ctx: typer.Context,
    env: EnvOpt,
    slot: Annotated[str, typer.Option("--slot", help="Slot to deploy to.")] = "staging",
    site: SiteOpt = None,
    package: Annotated[
        Path | None, typer.Option("--package", help="Deploy this zip instead of building one.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Package the sim server (zip + pinned requirements), zip-deploy it to SLOT, wait for /ready.

    Example: emrops deploy push --env production --slot staging
    """
    cfg = settings(ctx)
    environment = load_environment(cfg, env)
    name = appservice.site_name(cfg, environment, site)
    timing = swap.Timing.from_settings(cfg, environment, None)
    clients = arm.connect(cfg)
    result = swap.push(cfg, clients, environment, name, slot, timing, package, _say(json_out))
    if json_out:
        print_json(result)
    else:
        err_console.print(f"{result.site}/{result.slot} is ready at https://{result.host}")


@app.command("swap")
def swap_cmd(
    ctx: typer.Context,
    env: EnvOpt,
    site: SiteOpt = None,
    window: Annotated[
        str | None, typer.Option("--window", help="How long to probe production, e.g. 2m.")
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", help="Deadline for the whole command, e.g. 10m (see below)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Swap staging into production behind a health gate; swap back automatically (exit 3).

    Staging must answer /ready on the database's schema revision, or the swap is refused.
    Waits: deploy.ready_timeout (default 5m) for staging's /ready; --window (deploy.probe_window)
    of production probes after the swap. --timeout bounds the whole command: every wait is cut
    to what is left, except a swap or swap-back already sent to Azure. Deadline before the swap:
    exit 1, nothing changed; during the window: production is swapped back (exit 3).
    Example: emrops deploy swap --env production --window 2m --timeout 10m
    """
    started = time.monotonic()
    cfg = settings(ctx)
    environment = load_environment(cfg, env)
    name = appservice.site_name(cfg, environment, site)
    timing = swap.Timing.from_settings(cfg, environment, window)
    if timeout is not None:
        timing.deadline = started + parse_duration(timeout, what="--timeout")
    clients = arm.connect(cfg)
    client = appservice.AppClient(cfg, clients.credential)
    result = swap.swap(clients, client, environment, name, timing, _say(json_out))
    if json_out:
        print_json(result)
    else:
        err_console.print(f"{name}: swapped; production healthy for {timing.window:.0f}s")


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    env: EnvOpt,
    site: SiteOpt = None,
    yes: YesOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Swap production and staging back (the previous version returns to production).

    Example: emrops deploy rollback --env production --yes
    """
    cfg = settings(ctx)
    environment = load_environment(cfg, env)
    name = appservice.site_name(cfg, environment, site)
    timing = swap.Timing.from_settings(cfg, environment, None)
    confirm(f"Swap {name} production and staging back?", yes)
    clients = arm.connect(cfg)
    client = appservice.AppClient(cfg, clients.credential)
    result = swap.rollback(clients, client, environment, name, timing, _say(json_out))
    if json_out:
        print_json(result)
    else:
        err_console.print(f"{name}: rolled back; production is ready")
