"""``emrops migrate-db``: move an SQLite database to PostgreSQL (plan, run, verify, status,
rollback). Parsing and printing only; the work is in :mod:`emrops.migrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from emrops.cli import render
from emrops.cli.app import (
    JsonOpt,
    YesOpt,
    confirm,
    err_console,
    make_app,
    out_console,
    print_json,
    settings,
)
from emrops.errors import ChangesPending, CheckFailed
from emrops.migrate import api, reload
from emrops.migrate.journal import JOURNAL

app = make_app("Migrate an SQLite database to PostgreSQL: plan, run, verify, status, rollback.")

FromOpt = Annotated[str, typer.Option("--from", help="Source: sqlite:///path/to/app.db")]
ToOpt = Annotated[str, typer.Option("--to", help="Target: postgresql+psycopg://user@host/db")]
CastOpt = Annotated[
    Path | None,
    typer.Option("--cast", help="TOML cast rules per column ([table.column] type=...)."),
]


@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    source: FromOpt,
    target: ToOpt,
    cast: CastOpt = None,
    emit_sql: Annotated[Path | None, typer.Option("--emit-sql", help="Write the DDL here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Show how every table and column would migrate; exit 3 when some column holds values that
    do not fit without a cast rule, or some statement fails on the target. Reads the source
    read-only. Tries every statement the run would execute (tables, defaults, keys, CHECKs,
    indexes, foreign keys, views, trigger functions and triggers) on --to in a scratch schema
    inside a transaction that is rolled back, so exit 0 means `run` will not fail on schema
    (an untranslated trigger fails the plan too); CHECKs are also evaluated
    over the source rows. Needs CONNECT and CREATE on the --to database (as `run` does);
    exit 1 with a hint when --to is unreachable.

    Example: emrops migrate-db plan --from sqlite:///var/emrsim.db
    --to postgresql+psycopg://postgres@127.0.0.1/emrsim --emit-sql plan.sql
    """
    cfg = settings(ctx)
    result = api.make_plan(
        source,
        target,
        cast,
        emit_sql,
        state_dir=cfg.state_dir,
        backup_store=cfg.get("backup.store"),
        settings=cfg,
    )
    if json_out:
        print_json(result)
    else:
        _print_plan(result)
    if result["schema_failures"]:
        f = result["schema_failures"][0]
        raise CheckFailed(
            f"{len(result['schema_failures'])} statement(s) fail on the target; first: "
            f"{f['kind']} {f['name']}: {f['error']}",
            hint=f["hint"],
        )
    if result["anomalies"]:
        a = result["anomalies"][0]
        raise CheckFailed(
            f"{len(result['anomalies'])} column anomaly(ies) without a cast rule; first: table "
            f"{a['table']}, row {a['key']}, column {a['column']}: {a['message']}",
            hint="add rules to a cast file (--cast), or run with --on-error reject",
        )
    foreign = result["target_conflicts"]
    if foreign and JOURNAL not in foreign:
        raise CheckFailed(
            f"the target already has tables that no emrops run created: {', '.join(foreign[:5])}"
            + (" ..." if len(foreign) > 5 else "")
            + "; `run` would refuse to start",
            hint="migrate into an empty database, or drop or rename those tables first",
        )


def _print_plan(result: dict[str, Any]) -> None:
    table = Table(title="column mapping", show_lines=False)
    for name in ("table", "column", "SQLite", "PostgreSQL", "reason", "flag"):
        table.add_column(name)
    flagged = {(a["table"], a["column"]) for a in result["anomalies"]}
    for t in result["tables"]:
        for c in t["columns"]:
            flag = (
                "ANOMALY"
                if (t["source"], c["source"]) in flagged
                else ("note" if c["notes"] else "")
            )
            table.add_row(
                t["source"],
                c["source"],
                c["declared"] or "-",
                c["pg_type"] + (" identity" if c["identity"] else ""),
                c["reason"],
                flag,
            )
    out_console.print(table)
    if result["anomalies"]:
        an = Table(title="anomalies (values that do not fit)")
        for name in ("table", "column", "count", "first row", "value", "problem"):
            an.add_column(name)
        for a in result["anomalies"]:
            an.add_row(
                a["table"],
                a["column"],
                str(a["count"]),
                str(a["key"]),
                repr(a["value"]),
                a["message"],
            )
        out_console.print(an)
    if result["schema_failures"]:
        sf = Table(title="statements PostgreSQL refuses (tried on the target, rolled back)")
        for name in ("object", "table", "error", "SQL"):
            sf.add_column(name)
        for f in result["schema_failures"]:
            sf.add_row(f"{f['kind']} {f['name']}", f["table"] or "-", f["error"], f["sql"])
        out_console.print(sf)
    for line in result["checked_at_run"]:
        out_console.print(f"note: {line}")
    if result.get("backup"):
        out_console.print(result["backup"])
    for r in result["renames"]:
        out_console.print(f"rename {r['kind']} {r['from']!r} -> {r['to']!r}")
    for n in result["notes"]:
        out_console.print(f"note: {n}")
    for s in result["skipped"]:
        out_console.print(f"not migrated: {s}")
    out_console.print(
        f"{len(result['tables'])} tables, {len(result['views'])} views, "
        f"{len([t for t in result.get('triggers', []) if not t['error']])} triggers, "
        f"{result['rows']} rows; "
        f"estimated copy time {result['eta_seconds']} s"
    )


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    source: FromOpt,
    target: ToOpt,
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs", min=0, help="Tables copied in parallel (0 = usable cores, at most 8)."
        ),
    ] = 0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    cast: CastOpt = None,
    on_error: Annotated[
        str,
        typer.Option(
            "--on-error",
            help="abort (default) or reject (write bad rows to a reject file, exit 3).",
        ),
    ] = "abort",
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the final verify.")] = False,
    online: Annotated[
        bool,
        typer.Option(
            "--online",
            help="Keep the app writing: capture changes in the source (triggers), copy, replay; "
            "finish with `cutover`.",
        ),
    ] = False,
    reject_file: Annotated[
        Path | None, typer.Option("--reject-file", help="Where rejected rows go (JSON lines).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Copy the SQLite database into PostgreSQL: plan, create tables, COPY in parallel (with a
    pinned pre-migration backup taken alongside), build keys, constraints, indexes, identities,
    foreign keys, views and translated triggers, ANALYZE, verify. Offline (without --online)
    the source is read in place: stop the app first; a write to the source during the run
    fails it and removes what it created. Exit 3 when rows were rejected, an object could not
    be built or verification failed.

    Example: emrops migrate-db run --from sqlite:///var/emrsim.db
    --to postgresql+psycopg://postgres@127.0.0.1/emrsim --jobs 2
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    cfg = settings(ctx)
    state_dir = cfg.state_dir
    live_bars = err_console.is_terminal and not json_out and not render.json_mode()
    progress = Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        console=err_console,
        disable=not live_bars,
    )
    # not a terminal: one status line at most every 5 s (a JSON event with --log-format json)
    ticker = render.Ticker(err_console, interval_s=5.0, quiet=json_out or live_bars)
    tasks: dict[str, Any] = {}

    def on_tables(items: list[tuple[str, int]]) -> None:
        progress.start()  # only once copying starts, so early errors print nothing else
        for name, total in items:
            tasks[name] = progress.add_task(name[:24], total=max(total, 1), rate="")

    def on_rows(name: str, done: int, total: int) -> None:
        ticker.update(
            f"copying {name}: {done}/{total} rows",
            force=done >= total,
            table=name,
            done=done,
            total=total,
        )
        task = tasks.get(name)
        if task is not None:
            progress.update(task, completed=done)
            speed = progress.tasks[task].speed
            progress.update(task, rate=f"{int(speed)} rows/s" if speed else "")

    def on_phase(name: str) -> None:
        if not json_out:
            err_console.print(f"[bold]{name}[/bold]")

    try:
        result = api.run(
            source,
            target,
            state_dir=state_dir,
            backup_store=cfg.get("backup.store"),
            settings=cfg,
            jobs=jobs,
            resume=resume,
            cast=cast,
            on_error=on_error,
            verify=not no_verify,
            reject_file=reject_file,
            online=online,
            phase=on_phase,
            rows=on_rows,
            tables=on_tables,
        )
    finally:
        if tasks:
            progress.stop()
    if json_out:
        print_json(result)
    else:
        _print_run(result)
    _fail_if_bad(result)


def _print_run(result: dict[str, Any]) -> None:
    table = Table(title=f"migrate-db run {result['run_id']}")
    for name in ("table", "rows", "rejected", "seconds", "rows/s"):
        table.add_column(name, justify="right" if name != "table" else "left")
    for t in result["tables"]:
        table.add_row(
            t["table"],
            str(t["rows"]),
            str(t["rejected"]),
            str(t["seconds"] if t["seconds"] is not None else "-"),
            str(t["rows_per_s"] or "-"),
        )
    out_console.print(table)
    if not result["backup_id"]:
        kept = result["snapshot"] or "none (no backup store configured, or none found)"
        out_console.print(f"pre-migration snapshot: {kept}")
    else:
        out_console.print(f"pre-migration backup (pinned): {result['backup_id']}")
    if result["reject_file"]:
        out_console.print(f"rejected rows written to {result['reject_file']}")
    for n in result["notes"]:
        out_console.print(f"note: {n}")
    if result["online"]:
        out_console.print(
            f"online: change capture on, {result['online']['replayed_rows']} changed row(s) "
            "replayed; the app keeps writing to SQLite until `emrops migrate-db cutover`"
        )
    v = result["verify"]
    verdict = "skipped" if v is None else ("ok" if not v["problems"] else "FAILED")
    out_console.print(f"{result['rows']} rows in {result['seconds']} s; verify {verdict}")


def _fail_if_bad(result: dict[str, Any]) -> None:
    problems = list(result["failed_objects"])
    if result["verify"]:
        problems += result["verify"]["problems"]
    if result["rejected"]:
        problems.insert(
            0, f"{result['rejected']} row(s) rejected, written to {result['reject_file']}"
        )
    if problems:
        raise CheckFailed(
            "; ".join(problems[:3])
            + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""),
            hint="fix the causes, then `emrops migrate-db run --resume` or `rollback`",
        )


@app.command("verify")
def verify_cmd(source: FromOpt, target: ToOpt, json_out: JsonOpt = False) -> None:
    """Compare the target with the source: row counts, content checksums (with a keyed diff
    naming missing, extra and changed rows), identity sequences, constraint/index/view inventory.
    Exit 3 on any difference.

    Example: emrops migrate-db verify --from sqlite:///var/emrsim.db --to postgresql+psycopg://postgres@127.0.0.1/emrsim
    """
    result = api.verify(source, target)
    if json_out:
        print_json(result)
    else:
        table = Table(title="verify")
        for name in ("table", "source rows", "target rows", "checksum"):
            table.add_column(name)
        for t in result["tables"]:
            table.add_row(
                t["table"],
                str(t["source_rows"]),
                str(t["target_rows"]),
                "ok" if t["checksum_ok"] else "DIFFERS",
            )
        out_console.print(table)
        for p in result["problems"]:
            out_console.print(f"problem: {p}")
    if result["problems"]:
        raise CheckFailed(
            "; ".join(result["problems"][:3])
            + (f" (+{len(result['problems']) - 3} more)" if len(result["problems"]) > 3 else ""),
            hint="inspect the rows named above; rerun the migration if needed",
        )


@app.command("status")
def status_cmd(target: ToOpt, json_out: JsonOpt = False) -> None:
    """Show the migration journal of the target: run state, tables copied, objects built.

    Exit 0 when the migration is done (or cut over, or there is none), 3 when objects failed
    to build, 4 when it is unfinished or waiting for cutover. An unfinished run whose process
    is gone shows as ``failed`` with the step and the error it stopped on, or as
    ``interrupted`` with the step it died in when it was killed (--resume either); one still
    going shows as ``running``.

    Example: emrops migrate-db status --to postgresql+psycopg://postgres@127.0.0.1/emrsim
    """
    result = api.status(target)
    if json_out:
        print_json(result)
    else:
        _print_status(result)
    state = result["state"]
    if result["failed"] or state == "built-with-errors":
        raise CheckFailed(
            f"the migration finished with {len(result['failed'])} object(s) not built",
            hint="see the failures; fix them and `emrops migrate-db run --resume`, or `rollback`",
        )
    if state == "online":
        raise ChangesPending(
            "the online run is waiting for cutover", hint="run `emrops migrate-db cutover`"
        )
    if state == "failed":
        raise ChangesPending(
            f"the run stopped with an error while {result['step'] or 'starting'}: "
            f"{result['error']}",
            hint="fix the cause, then continue with `emrops migrate-db run --resume`, or remove "
            "it with `emrops migrate-db rollback`",
        )
    if state == "interrupted":
        raise ChangesPending(
            f"the run was interrupted (killed or crashed) while {result['step'] or 'starting'}",
            hint="continue it with `emrops migrate-db run --resume`, or remove it with "
            "`emrops migrate-db rollback`",
        )
    if state not in ("done", "cut-over", "none"):
        raise ChangesPending(
            f"the migration is not finished (state {state})",
            hint="continue it with `emrops migrate-db run --resume`, or remove it with "
            "`emrops migrate-db rollback`",
        )


def _print_status(result: dict[str, Any]) -> None:
    step = f" (step: {result['step']})" if result.get("step") else ""
    out_console.print(f"state: {result['state']}{step}")
    for t in result["tables"]:
        counts = (
            "not copied yet"
            if t["rows"] is None
            else f"{t['rows']} rows, {t['rejected'] or 0} rejected"
        )
        out_console.print(f"  {t['table']}: {t['state']} ({counts})")
    if result["state"] != "none":
        out_console.print(
            f"objects: {result['objects']['done']} done, {result['objects']['failed']} failed"
        )
    for f in result["failed"]:
        out_console.print(f"  failed {f}")


ReloadShellOpt = Annotated[
    bool,
    typer.Option("--reload-shell", help="Run --reload-cmd through /bin/sh (pipes, redirects)."),
]
ReloadTimeoutOpt = Annotated[
    float,
    typer.Option("--reload-timeout", help="Seconds before --reload-cmd is killed.", min=0.1),
]


def _reload(command: str | None, shell: bool, timeout: float) -> reload.ReloadCommand | None:
    if command is None:
        return None
    cmd = reload.ReloadCommand(command, shell=shell, timeout_s=timeout)
    cmd.check()
    return cmd


@app.command("cutover")
def cutover_cmd(
    ctx: typer.Context,
    source: FromOpt,
    target: ToOpt,
    reload_cmd: Annotated[
        str | None,
        typer.Option("--reload-cmd", help="Run after the config switch, e.g. 'kill -HUP PID'."),
    ] = None,
    reload_shell: ReloadShellOpt = False,
    reload_timeout: ReloadTimeoutOpt = reload.DEFAULT_TIMEOUT_S,
    json_out: JsonOpt = False,
) -> None:
    """Finish an online run: maintenance on (writes get 503), replay the last changes, verify,
    write the PostgreSQL URL into the config file in use, run --reload-cmd, lift maintenance on
    PostgreSQL, remove the source's triggers. Reports the write-downtime window. Exit 3 (and
    stay on SQLite) when verification fails.

    --reload-cmd runs without a shell (split like one) unless --reload-shell is given, and is
    killed after --reload-timeout seconds. Without it, cutover says what the operator must do.

    Example: emrops migrate-db cutover --from sqlite:///var/emrsim.db
    --to postgresql+psycopg://postgres@127.0.0.1/emrsim --reload-cmd 'kill -HUP 1234'
    """
    import os

    command = _reload(reload_cmd, reload_shell, reload_timeout)

    cfg = settings(ctx)
    config_file = cfg.config_file or Path("emrops.toml").resolve()

    def on_phase(name: str) -> None:
        if not json_out:
            err_console.print(f"[bold]{name}[/bold]")

    result = api.cutover(
        source,
        target,
        config_file=config_file,
        reload_cmd=command,
        env_db_url=os.environ.get("EMROPS_DB_URL"),
        phase=on_phase,
        settings=cfg,
    )
    for w in result["warnings"]:
        err_console.print(f"warning: {w}")
    if json_out:
        print_json(result)
    else:
        reloaded = f"; reload command: {result['reload']}" if result["reload"] else ""
        out_console.print(
            f"cut over to {result['db_url']} (written to {result['config_file']}); "
            f"{result['replayed_rows']} row(s) replayed; write downtime {result['downtime_ms']} ms"
            + reloaded
        )
    for step in result["next_steps"]:
        err_console.print(f"next: {step}")


@app.command("rollback")
def rollback_cmd(
    ctx: typer.Context,
    target: ToOpt,
    source: Annotated[
        str | None,
        typer.Option("--from", help="Source to clean of change capture (when no journal says)."),
    ] = None,
    reload_cmd: Annotated[
        str | None,
        typer.Option("--reload-cmd", help="After cutover: run once the config points back."),
    ] = None,
    reload_shell: ReloadShellOpt = False,
    reload_timeout: ReloadTimeoutOpt = reload.DEFAULT_TIMEOUT_S,
    yes: YesOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would go.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Remove exactly what `run` created (from its journal): in the target its views, tables
    (with their triggers), trigger functions, the journal and an extension it created; in the
    source (online runs) the change-capture triggers and table, nothing else. After cutover it
    first replays the writes made on PostgreSQL into SQLite and points the config back to it,
    so going back loses nothing. The pre-migration backup is unpinned (it stays in the backup
    store until rotation removes it; a rerun of the same unchanged source reuses and pins it
    again); the pre-migration snapshot is kept. Idempotent.

    Example: emrops migrate-db rollback --to postgresql+psycopg://postgres@127.0.0.1/emrsim --yes
    """
    command = _reload(reload_cmd, reload_shell, reload_timeout)
    rp = api.rollback_plan(target, source)
    done = False
    removed: list[str] = []
    if not rp["empty"] and not dry_run:
        confirm(
            f"drop {len(rp['tables'])} table(s) and {len(rp['views'])} view(s) from the target"
            + (" and the change capture from the source" if rp["source_capture"] else "")
            + "?",
            yes,
        )
        config_file = settings(ctx).config_file or Path("emrops.toml").resolve()
        removed = api.rollback(
            target,
            source,
            config_file=config_file,
            reload_cmd=command,
            settings=settings(ctx),
        )
        done = True
    result = {**rp, "dry_run": dry_run, "rolled_back": done, "removed_from_source": removed}
    if json_out:
        print_json(result)
    elif rp["empty"]:
        err_console.print("nothing to roll back: the target has no emrops migration")
    else:
        verb = "would drop" if dry_run else "dropped"
        out_console.print(f"{verb} views: {', '.join(rp['views']) or '-'}")
        out_console.print(f"{verb} tables: {', '.join(rp['tables']) or '-'}")
        if rp["journal"]:
            out_console.print(f"{verb} journal table emrops_migration")
        if rp["source_capture"]:
            out_console.print(f"{verb} change capture in {rp['source_capture']}")
        for line in removed:
            out_console.print(line)
