"""``emrops backup`` rotate, restore, pin/unpin, copy and keygen (registered on the backup app).

Thin like cli/backup.py (run, verify, list and the shared options live there).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emrops.backup.manifest import check_id
from emrops.cli.app import (
    JsonOpt,
    YesOpt,
    confirm,
    err_console,
    out_console,
    output_file,
    print_json,
)
from emrops.cli.app import settings as load_settings
from emrops.cli.backup import (
    IdArg,
    ScratchDbOpt,
    SourceOpt,
    StoreOpt,
    _progress,
    _size,
    _store,
    app,
    source_filter,
)
from emrops.errors import UsageError


@app.command("rotate")
def rotate_cmd(
    ctx: typer.Context,
    keep_last: Annotated[
        int, typer.Option("--keep-last", min=0, help="Keep the N newest verified.")
    ] = 0,
    keep_daily: Annotated[
        int, typer.Option("--keep-daily", min=0, help="Newest of each of N days.")
    ] = 0,
    keep_weekly: Annotated[
        int, typer.Option("--keep-weekly", min=0, help="... of N ISO weeks.")
    ] = 0,
    keep_monthly: Annotated[
        int, typer.Option("--keep-monthly", min=0, help="... of N months.")
    ] = 0,
    tz: Annotated[
        str, typer.Option("--tz", help="Time zone of day/week/month boundaries.")
    ] = "UTC",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, delete nothing.")
    ] = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Delete backups no keep rule holds (only verified backups count; pinned ones stay).

    Example: emrops backup rotate --keep-last 3 --keep-daily 7 --keep-weekly 4 --dry-run
    """
    target, _ = _store(ctx, store)
    from emrops.backup import catalog, retention

    policy = retention.Policy(keep_last, keep_daily, keep_weekly, keep_monthly)
    result = catalog.rotate(target, policy, tz=tz, dry_run=dry_run)
    if json_out:
        print_json(
            {
                "store": target.url,
                "dry_run": result.dry_run,
                "tz": result.tz,
                "policy": result.policy,
                "decisions": [
                    {
                        "id": d.id,
                        "created_at": d.created_at,
                        "action": "keep" if d.keep else "delete",
                        "reasons": list(d.reasons),
                    }
                    for d in result.decisions
                ],
                "deleted": result.deleted,
            }
        )
        return
    table = Table(title=f"rotate {target.url}" + (" (dry run: nothing deleted)" if dry_run else ""))
    table.add_column("id", no_wrap=True)
    table.add_column("action")
    table.add_column("reasons")
    for d in result.decisions:
        action = "keep" if d.keep else ("[yellow]would delete[/]" if dry_run else "[red]deleted[/]")
        table.add_row(d.id, action, ", ".join(d.reasons))
    out_console.print(table)


@app.command("restore")
def restore_cmd(
    ctx: typer.Context,
    target: Annotated[
        str, typer.Option("--target", help="SQLite file path or database URL to restore into.")
    ],
    backup_id: Annotated[
        str | None, typer.Argument(help="Backup id (or use --latest).", show_default=False)
    ] = None,
    latest: Annotated[
        bool,
        typer.Option(
            "--latest", help="The newest backup of the configured database (or --source)."
        ),
    ] = False,
    source: SourceOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan, change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a database / a different revision.")
    ] = False,
    yes: YesOpt = False,
    store: StoreOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore a backup: plan, verify, safety backup, maintenance on, atomic swap.

    Restoring onto an existing database needs --force; so does restoring a backup of another
    database onto one. --latest picks the newest backup of the configured database (db_url),
    or of --source URL|PATH (all: of any database).
    Example: emrops backup restore 20261125T193012.345Z-3fa2c1 --target var/emrsim.db --dry-run
    """
    if (backup_id is None) == (not latest):
        raise UsageError(
            "give one of: a backup ID or --latest",
            hint="emrops backup restore --latest --target var/emrsim.db --dry-run",
        )
    store_, cfg = _store(ctx, store)
    if latest:
        from emrops.backup.verify import latest_id

        backup_id = latest_id(store_, source_filter(cfg, source))
    assert backup_id is not None
    check_id(backup_id)
    source_store = store_
    from emrops.backup.restore import check_refusals, plan_restore, restore

    plan = plan_restore(source_store, backup_id, target)
    if not json_out:
        err_console.print(
            f"restore plan for {plan.backup_id} ({plan.backup_engine}) -> {plan.target}:"
        )
        for number, step in enumerate(plan.steps, 1):
            err_console.print(f"  {number}. {step}", markup=False)
        for refusal in plan.refusals:
            err_console.print(f"  needs --force: {refusal}", markup=False)
    if dry_run:
        if json_out:
            print_json({"dry_run": True, "plan": plan})
        return
    check_refusals(plan, force)
    confirm(f"Restore backup {backup_id} into {plan.target}?", yes)
    with _progress(json_out) as progress:
        result = restore(source_store, backup_id, target, force=force, progress=progress)
    if json_out:
        print_json({"dry_run": False, **vars(result)})
        return
    err_console.print(f"restored {backup_id} into {plan.target} in {result.duration_s:.2f}s")
    if result.safety_backup_id:
        err_console.print(f"safety backup of the previous database: {result.safety_backup_id}")
    if result.moved_aside:
        err_console.print(f"the previous file was moved aside to {result.moved_aside}")
    for note in result.notes:
        err_console.print(f"note: {note}")


def _pin(
    ctx: typer.Context, backup_id: str, store: str | None, pinned: bool, json_out: bool
) -> None:
    target, _ = _store(ctx, store)
    from emrops.backup import catalog

    entry = catalog.set_pin(target, check_id(backup_id), pinned)
    if json_out:
        print_json(entry)
    else:
        err_console.print(
            f"{backup_id} {'pinned: rotate never deletes it' if pinned else 'unpinned'}"
        )


@app.command("pin")
def pin_cmd(
    ctx: typer.Context, backup_id: IdArg, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """Pin a backup: rotate never deletes it. Example: emrops backup pin ID"""
    _pin(ctx, backup_id, store, True, json_out)


@app.command("unpin")
def unpin_cmd(
    ctx: typer.Context, backup_id: IdArg, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """Unpin a backup (rotate may delete it again). Example: emrops backup unpin ID"""
    _pin(ctx, backup_id, store, False, json_out)


@app.command("copy")
def copy_cmd(
    ctx: typer.Context,
    backup_id: IdArg,
    to: Annotated[str, typer.Option("--to", help="Destination store (folder or azure://...).")],
    store: StoreOpt = None,
    db: ScratchDbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy a backup to a second store and verify it there.

    Example: emrops backup copy 20261125T193012.345Z-3fa2c1 --to azure://backups/emrsim
    """
    source, cfg = _store(ctx, store, db)
    from emrops.backup.copy import copy_backup
    from emrops.backup.stores import open_store

    destination = open_store(load_settings(ctx, **{"backup.store": to}).get("backup.store"), cfg)
    pg_server = cfg.db_url if cfg.db_url.startswith("postgres") else None
    with _progress(json_out) as progress:
        result = copy_backup(
            source, destination, check_id(backup_id), pg_server=pg_server, progress=progress
        )
    if json_out:
        print_json(result)
    else:
        err_console.print(
            f"copied {backup_id} to {result.destination} ({_size(result.bytes_copied)}), verified"
        )


@app.command("keygen")
def keygen_cmd(
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write the identity file here (mode 0600, never overwritten) instead of stdout.",
            dir_okay=False,
            callback=output_file,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make a new age identity (secret) and its recipient (public).

    Keep the identity in a secret store and give it to verify/restore as EMROPS_BACKUP_IDENTITY;
    put the recipient in emrops.toml as backup.recipient. With --out the identity goes into a
    new file (0600, refused if it exists) and only the recipient is printed.
    Example: emrops backup keygen --out ~/.config/emrops/backup.key
    """
    from emrops.backup import crypto

    pair = crypto.keygen()
    if out is not None:
        crypto.write_identity_file(out, pair)
        if json_out:
            print_json({"identity_file": str(out), "recipient": pair.recipient})
        else:
            err_console.print(f"wrote the identity to {out} (mode 0600); public key below")
            typer.echo(pair.recipient)
        return
    if json_out:
        # the one place a secret is printed on purpose: the user asked for a new one
        import json
        import sys

        sys.stdout.write(
            json.dumps({"identity": pair.identity, "recipient": pair.recipient}) + "\n"
        )
        return
    err_console.print(
        "# keep the identity secret: export EMROPS_BACKUP_IDENTITY=... for verify/restore "
        "(or use --out FILE for a 0600 file)"
    )
    typer.echo(f"# public key: {pair.recipient}")
    typer.echo(pair.identity)
