"""``emrops backup``: run, verify, list, rotate, restore, pin/unpin, copy, keygen.

Thin: options in, one core call (emrops.backup), a rich table or ``--json`` out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from emrops.backup.manifest import check_id, parse_time
from emrops.cli.app import (
    DbOpt,
    JsonOpt,
    err_console,
    make_app,
    out_console,
    print_json,
)
from emrops.cli.app import settings as load_settings
from emrops.config import Settings
from emrops.errors import UsageError
from emrops.units import format_duration

if TYPE_CHECKING:
    from emrops.backup.sources import Source
    from emrops.backup.stores import Store

# The core (sqlalchemy, zstandard, pyrage, azure) is imported inside each command, so the
# other emrops commands do not pay for it at start-up.

app = make_app(
    "Backups of the EMRsim database: run, verify, list, rotate, restore, pin, copy, keygen."
)

StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store", help="Backup store: a folder (default ./backups) or azure://CONTAINER/PREFIX."
    ),
]
IdArg = Annotated[str, typer.Argument(help="Backup id, as shown by `emrops backup list`.")]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Only backups of this database (URL or SQLite path), or 'all'. "
        "Default: the configured database for --latest, every source otherwise.",
    ),
]
ScratchDbOpt = Annotated[
    str | None,
    typer.Option("--db", help="PostgreSQL server for scratch databases (PG backups)."),
]


def source_filter(cfg: Settings, text: str | None) -> Source | None:
    """``--source`` as a filter; without it, the configured database (see select_source)."""
    from emrops.backup.sources import select_source

    return select_source(text, cfg.db_url, cfg.sources["db_url"] == "default")


def _store(ctx: typer.Context, store: str | None, db: str | None = None) -> tuple[Store, Settings]:
    cfg = load_settings(ctx, db_url=db, **{"backup.store": store})
    from emrops.backup.stores import open_store

    return open_store(cfg.get("backup.store"), cfg), cfg


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int, int | None], None]]:
    """A rich progress bar on stderr, fed by the core's progress callback."""
    bar = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console,
        transient=True,
        disable=quiet or not err_console.is_terminal,
    )
    tasks: dict[str, Any] = {}

    def report(phase: str, done: int, total: int | None) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done, total=total)

    with bar:
        yield report


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"


def _age(created_at: str) -> str:
    seconds = (datetime.now(UTC) - parse_time(created_at)).total_seconds()
    return "in the future" if seconds < -60 else format_duration(max(seconds, 0))


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    db: DbOpt = None,
    store: StoreOpt = None,
    encrypt: Annotated[
        bool, typer.Option("--encrypt", help="Encrypt to backup.recipient (age).")
    ] = False,
    label: Annotated[str, typer.Option("--label", help="A note kept in the manifest.")] = "",
    pin: Annotated[bool, typer.Option("--pin", help="Never rotate this backup away.")] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Verify the backup right after.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Take a consistent backup of the database into the store (manifest written last).

    Example: emrops backup run --db sqlite:///var/emrsim.db --store ./backups --label nightly
    """
    target, cfg = _store(ctx, store, db)
    from emrops.backup.run import RunOptions, run_backup

    opts = RunOptions(
        db_url=cfg.db_url,
        label=label,
        pin=pin,
        encrypt=encrypt,
        recipients=cfg.get("backup.recipient"),
        level=int(cfg.get("backup.compression_level")),
    )
    with _progress(json_out) as progress:
        manifest = run_backup(target, opts, progress)
        results = []
        if verify:
            from emrops.backup.verify import verify_backups

            results = verify_backups(target, [manifest.id], pg_server=cfg.db_url, progress=progress)
    if json_out:
        print_json({"manifest": manifest, "verification": results[0] if results else None})
    else:
        err_console.print(
            f"backup [bold]{manifest.id}[/] of {manifest.source} -> {target.url}: "
            f"{_size(manifest.size)} ({sum(manifest.row_counts.values())} rows, "
            f"{manifest.duration_s:.2f}s)"
        )
        out_console.print(manifest.id)
    if results:
        from emrops.backup.verify import raise_failures

        raise_failures(results)


@app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    backup_id: Annotated[
        str | None, typer.Argument(help="Backup id (or use --latest / --all).")
    ] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Verify the newest backup.")] = False,
    all_: Annotated[bool, typer.Option("--all", help="Verify every backup in the store.")] = False,
    source: SourceOpt = None,
    store: StoreOpt = None,
    db: ScratchDbOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Restore backups into scratch and check them; exit 3 naming what failed.

    Checks: the manifest (schema, seal), size + SHA-256, decrypt (and the manifest digest inside
    the encrypted stream), decompress, integrity_check + foreign_key_check (SQLite) or
    pg_restore into a scratch database (PostgreSQL), row counts. The result is recorded in the
    store. --all goes on past failures; exit 3 if any failed, else 1 if any could not be
    checked (e.g. EMROPS_BACKUP_IDENTITY missing), else 0.
    Example: emrops backup verify --latest
    """
    if sum([backup_id is not None, latest, all_]) != 1:
        raise UsageError(
            "give one of: a backup ID, --latest or --all", hint="emrops backup verify --latest"
        )
    from emrops.backup.verify import raise_failures, verify_backups

    target, cfg = _store(ctx, store, db)
    ids = [check_id(backup_id)] if backup_id else []
    pg_server = cfg.db_url if cfg.db_url.startswith("postgres") else None
    if latest:
        chosen = source_filter(cfg, source)
    else:
        chosen = None if source is None else source_filter(cfg, source)
    with _progress(json_out) as progress:
        results = verify_backups(
            target, ids, pg_server=pg_server, progress=progress, latest=latest, source=chosen
        )
    if json_out:
        print_json(results)
    else:
        for result in results:
            if result.ok is None:
                err_console.print(f"{result.backup_id}: [yellow]NOT CHECKED[/]")
                err_console.print(f"  {result.reason}", markup=False)
                continue
            state = "[green]ok[/]" if result.ok else "[red]FAILED[/]"
            err_console.print(f"{result.backup_id}: {state} ({result.duration_s:.2f}s)")
            for check in result.checks:
                mark = "ok " if check.ok else "FAIL"
                err_console.print(f"  {mark} {check.name}: {check.detail}", markup=False)
    raise_failures(results)


@app.command("list")
def list_cmd(
    ctx: typer.Context, source: SourceOpt = None, store: StoreOpt = None, json_out: JsonOpt = False
) -> None:
    """List the published backups (a run without a manifest is not listed), with their source.

    A backup whose manifest is invalid is listed as BROKEN with the reason; a failed
    verification shows what failed. Example: emrops backup list --store azure://backups/emrsim
    """
    target, cfg = _store(ctx, store)
    from emrops.backup import catalog

    chosen = None if source is None else source_filter(cfg, source)
    entries = catalog.list_backups(target, chosen)
    root = getattr(target, "root", None)  # a local store's folder
    if not entries and isinstance(root, Path) and not root.exists():
        # a mistyped --store listed nothing, exit 0, as if the backups were gone
        err_console.print(
            f"warning: backup store {escape(str(root))} does not exist: no backup was ever "
            "written there (check --store / backup.store)",
            style="yellow",
        )
    if json_out:
        print_json({"store": target.url, "backups": entries})
        return
    sources = sorted({e.source for e in entries if e.broken is None})
    # piped output keeps every column (a script greps the source); a terminal drops a lone one
    show_source = len(sources) > 1 or not out_console.is_terminal
    table = Table(title=f"backups in {target.url}")
    table.add_column("id", no_wrap=True)
    for column in ("age", "engine", "source", "size", "verified", "pinned", "label"):
        if column != "source" or show_source:
            table.add_column(column, min_width=6 if column == "verified" else None)
    for e in entries:
        verified = {
            "ok": "[green]ok[/]",
            "failed": "[red]FAILED[/]",
            "broken": "[red]BROKEN[/]",
            "invalid": "[yellow]record invalid[/]",
        }.get(e.verified, "never")
        cells = [
            escape(e.id),
            _age(e.created_at) if e.broken is None else "?",
            e.engine,
            escape(_short_source(e.source)),
            _size(e.size),
            verified,
            "pinned" if e.pinned else "",
            escape(e.label) + (" (encrypted)" if e.encrypted else ""),
        ]
        if not show_source:
            del cells[3]
        table.add_row(*cells)
    out_console.print(table)
    # notes are for people: stderr, so piped stdout stays one header plus one row per backup
    if len(sources) == 1:
        err_console.print(f"source: {sources[0]}", markup=False, soft_wrap=True)
    for e in entries:
        if e.reason:
            err_console.print(f"{e.id}: {e.verified}: {e.reason}", markup=False, soft_wrap=True)
        if e.broken is None and not e.sealed:
            err_console.print(
                f"{e.id}: (unsealed) its manifest was written before manifests had seals",
                markup=False,
                soft_wrap=True,
            )


def _short_source(source: str) -> str:
    """A source URL short enough for a table column: the file name, or host/database."""
    if source.startswith("sqlite:"):
        return source.rsplit("/", 1)[-1]
    return source.split("@", 1)[-1]


# rotate, restore, pin/unpin, copy and keygen live in backup_admin.py and register on ``app``.
from emrops.cli import backup_admin as _admin  # noqa: E402

__all__ = ["_admin", "app"]
