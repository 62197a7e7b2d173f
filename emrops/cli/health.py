"""``emrops health``: is the deployment healthy? A table for people, JSON for machines, exit 3.

Registered directly on the root app (a single command, not a group); the core is imported
inside the function so ``emrops --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from emrops.cli.app import (
    CheckTimeoutOpt,
    DbOpt,
    JsonOpt,
    err_console,
    out_console,
    print_json,
)
from emrops.cli.app import settings as load_settings


def health(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", help="Sim server URL (default: sim.url).")
    ] = None,
    max_backup_age: Annotated[
        str | None,
        typer.Option("--max-backup-age", help="Newest verified backup must be younger (26h)."),
    ] = None,
    max_heartbeat_age: Annotated[
        str | None,
        typer.Option("--max-heartbeat-age", help="Scheduler heartbeat must be younger (5m)."),
    ] = None,
    min_free_disk: Annotated[
        str | None, typer.Option("--min-free-disk", help="Free space the store needs (1GB).")
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", help="Leave a check out (repeatable), e.g. --skip scheduler."),
    ] = None,
    alert_webhook: Annotated[
        str | None,
        typer.Option(
            "--alert-webhook",
            help="POST a JSON alert here on failure (default: EMROPS_HEALTH_ALERT_WEBHOOK).",
        ),
    ] = None,
    db: DbOpt = None,
    store: Annotated[str | None, typer.Option("--store", help="Backup store to check.")] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="backup_age: backups of this database (URL or path) or 'all' "
            "(default: the checked database's).",
        ),
    ] = None,
    timeout: CheckTimeoutOpt = "5s",
    json_out: JsonOpt = False,
) -> None:
    """Check the sim server (/health, /ready), the database, the newest verified backup's
    age, free disk space of the store and the scheduler heartbeat; exit 3 naming each failure.

    Checks: sim_health, sim_ready, database, backup_age, disk_space, scheduler.
    Example: emrops health --url http://127.0.0.1:8000 --max-backup-age 26h --json
    """
    from rich.table import Table

    from emrops.errors import CheckFailed
    from emrops.health.alert import post_alert
    from emrops.health.checks import HealthOptions, check_names, run_checks
    from emrops.schedule.jobs import status_dir
    from emrops.units import parse_duration, parse_size

    cfg = load_settings(
        ctx,
        db_url=db,
        **{
            "sim.url": url,
            "backup.store": store,
            "health.max_backup_age": max_backup_age,
            "health.max_heartbeat_age": max_heartbeat_age,
            "health.min_free_disk": min_free_disk,
            "health.alert_webhook": alert_webhook,
        },
    )
    opts = HealthOptions(
        sim_url=str(cfg.get("sim.url")),
        db_url=cfg.db_url,
        store_spec=str(cfg.get("backup.store")),
        status_dir=status_dir(cfg),
        max_backup_age_s=parse_duration(cfg.get("health.max_backup_age"), what="max backup age"),
        max_heartbeat_age_s=parse_duration(
            cfg.get("health.max_heartbeat_age"), what="max heartbeat age"
        ),
        min_free_bytes=parse_size(cfg.get("health.min_free_disk")),
        token=cfg.get("sim.token"),
        settings=cfg,
        skip=check_names(skip or []),
        source=source,
        db_url_is_default=cfg.sources["db_url"] == "default",
        timeout_s=parse_duration(timeout, what="--timeout"),
    )
    report = run_checks(opts)
    webhook = cfg.get("health.alert_webhook")
    if not report.ok and webhook:
        report.alert = post_alert(webhook, report)
    if json_out:
        print_json(report)
    else:
        table = Table(title=f"emrops health on {report.host} at {report.checked_at}")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail")
        for c in report.checks:
            mark = "[dim]skipped[/]" if c.skipped else ("[green]ok[/]" if c.ok else "[red]FAIL[/]")
            table.add_row(c.name, mark, c.detail)
        out_console.print(table)
        if report.alert is not None:
            sent = "sent" if report.alert["sent"] else f"NOT sent ({report.alert['error']})"
            err_console.print(f"alert webhook: {sent}")
    if not report.ok:
        names = ", ".join(f"{c.name} ({c.detail})" for c in report.failed)
        raise CheckFailed(
            f"health check failed: {names}",
            hint="fix what failed; --skip CHECK leaves out a check that does not apply here",
        )
