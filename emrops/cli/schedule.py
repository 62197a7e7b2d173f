"""``emrops schedule``: run the scheduler, run one job, show jobs, install cron/systemd entries.

Thin: options in, one core call (emrops.schedule), a rich table or ``--json`` out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from emrops.cli.app import JsonOpt, context, err_console, make_app, out_console, print_json
from emrops.cli.app import settings as load_settings
from emrops.cli.render import plain
from emrops.errors import EmropsError, ExitCode, Interrupted, UsageError

app = make_app("Scheduled backups: run the scheduler, run one job, show jobs, install timers.")

JobArg = Annotated[str, typer.Argument(help="Job: backup, verify, rotate or drill.")]


def _context(ctx: typer.Context):  # -> JobContext (core imported lazily: start-up time)
    from emrops.schedule.jobs import JobContext

    return JobContext.from_settings(load_settings(ctx), run_id=context(ctx).run_id)


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    catch_up: Annotated[
        bool,
        typer.Option("--catch-up/--no-catch-up", help="At start, run jobs that missed a tick."),
    ] = True,
) -> None:
    """Run the scheduler in the foreground until SIGTERM/SIGINT (jobs from config, UTC).

    Jobs: schedule.backup / verify / rotate / drill (cron expressions; "off" disables).
    Each run writes <status_dir>/<job>.json and <job>.prom; a heartbeat file shows it is alive.
    Example: emrops --config /etc/emrops/emrops.toml schedule run
    """
    from emrops.schedule.runner import RunOptions, run_scheduler
    from emrops.units import parse_duration

    job_ctx = _context(ctx)
    cfg = job_ctx.settings
    assert cfg is not None
    if not any(job_ctx.schedules.values()):
        raise UsageError("every job is off", hint="set schedule.backup = '0 2 * * *' in the config")
    opts = RunOptions(
        misfire_grace_s=parse_duration(cfg.get("schedule.misfire_grace"), what="misfire grace"),
        heartbeat_s=max(
            parse_duration(cfg.get("schedule.heartbeat_interval"), what="heartbeat"), 0.5
        ),
        catch_up=catch_up,
    )
    stopped_by = run_scheduler(job_ctx, opts)
    if stopped_by == "SIGINT":
        raise Interrupted("interrupted: scheduler stopped cleanly")


@app.command("run-job")
def run_job_cmd(
    ctx: typer.Context,
    job: JobArg,
    claim: Annotated[
        bool,
        typer.Option(
            "--claim/--no-claim",
            help="On PostgreSQL, claim the job's current tick first (--no-claim: manual rerun).",
        ),
    ] = True,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            help="verify/drill: backups of this database (URL or path) or 'all' "
            "(default: the configured database's).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run one job once (for cron, systemd timers and CI) and record its status.

    Exit 0 done (or the tick was already run by another instance), 75 the store was locked,
    3 verification or drill check failed, 1 other failure.
    Example: emrops schedule run-job backup
    """
    from datetime import UTC, datetime

    from emrops.schedule.jobs import JOBS, execute
    from emrops.schedule.status import prepare as prepare_status

    if job not in JOBS:
        raise UsageError(f"unknown job {job!r}", hint=f"jobs are: {', '.join(JOBS)}")
    job_ctx = _context(ctx)
    job_ctx.source = source
    prepare_status(job_ctx.status_dir)  # before the job: its status must be recordable
    schedule = job_ctx.schedules.get(job)
    tick = schedule.latest_at_or_before(datetime.now(UTC)) if schedule and claim else None
    status = execute(job_ctx, job, tick, claim=claim)
    if json_out:
        print_json(status)
    else:
        text = status.error or status.detail
        err_console.print(plain(f"{job}: {status.result} ({status.duration_s:.2f}s) {text}"))
    if not status.ok:
        raise EmropsError(
            f"job {job} {status.result}: {status.error}",
            hint="see the status file in " + str(job_ctx.status_dir),
            exit_code=ExitCode(status.exit_code) if status.exit_code in ExitCode._value2member_map_
            else ExitCode.ERROR,
        )  # fmt: skip
    if status.unrecorded:
        raise EmropsError(
            f"job {job} {status.result}, but its status could not be recorded: {status.unrecorded}",
            hint=f"free space in (or fix the permissions of) {job_ctx.status_dir}: health "
            "checks and `schedule show` read the job's status there",
        )


@app.command("show")
def show_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Each job: its schedule, next run, last run and result; and the scheduler's heartbeat.

    Example: emrops schedule show --json
    """
    from emrops.schedule.overview import overview

    view = overview(_context(ctx))
    if json_out:
        print_json(view)
        return
    # status files can be edited or damaged: their text is never markup nor terminal escapes
    table = Table(title=plain(f"scheduled jobs (times UTC), status in {view.status_dir}"))
    table.add_column("job", no_wrap=True)
    table.add_column("schedule")
    for column in ("next run", "last run", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("detail")
    colours = {"success": "green", "failure": "red", "busy": "yellow", "skipped": "cyan"}
    for j in view.jobs:
        result = plain(str(j.result), colours.get(j.result or "", "white")) if j.result else "never"
        table.add_row(
            plain(j.job),
            plain(j.schedule),
            plain(_short(j.next_run)),
            plain(_short(j.last_run)),
            result,
            plain(str(j.detail or "")),
        )
    out_console.print(table)
    beat = view.scheduler
    if beat is None:
        err_console.print("scheduler: no heartbeat (not running as `emrops schedule run`)")
    else:
        err_console.print(
            plain(
                f"scheduler: {beat.get('state')}, pid {beat.get('pid')} on {beat.get('host')}, "
                f"heartbeat {view.heartbeat_age_s}s ago"
            )
        )


def _short(iso: str | None) -> str:
    """2026-11-25T02:00:00.000Z -> 11-25 02:00:00 (the table's title says UTC; JSON has all).
    Another year than this one keeps its year: `0 0 29 2 *` next runs in 2028, not in
    February, and a last run a year ago is not this year's."""
    if not iso:
        return "-"
    from datetime import UTC, datetime

    same_year = iso[:4] == str(datetime.now(UTC).year)
    return f"{iso[5:10] if same_year else iso[:10]} {iso[11:19]}"


@app.command("install")
def install_cmd(
    ctx: typer.Context,
    cron_: Annotated[bool, typer.Option("--cron", help="Print crontab lines.")] = False,
    systemd: Annotated[
        bool, typer.Option("--systemd", help="Print systemd service + timer units.")
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option("--out-dir", help="Write the files into this folder instead of printing."),
    ] = None,
    user: Annotated[str | None, typer.Option("--user", help="systemd User= for the units.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Print (or write) cron lines or systemd units calling `emrops schedule run-job JOB`.

    Absolute paths to the emrops executable and --config, so they work from cron's empty
    environment. systemd output also has services for `schedule run` and `sim serve`.
    Example: emrops --config /etc/emrops/emrops.toml schedule install --systemd --out-dir units/
    """
    if cron_ == systemd:
        raise UsageError("give one of --cron or --systemd", hint="emrops schedule install --cron")
    from emrops import atomic
    from emrops.schedule.install import Target, crontab, emrops_executable, systemd_units

    job_ctx = _context(ctx)
    cfg = job_ctx.settings
    assert cfg is not None
    jobs = {name: s for name, s in job_ctx.schedules.items() if s is not None}
    if cfg.config_file is None:
        err_console.print(
            "note: no config file found; the entries use the defaults and the current folder"
        )
    target = Target(
        command=emrops_executable(),
        config_file=cfg.config_file,
        workdir=(cfg.config_file.parent if cfg.config_file else Path.cwd()).absolute(),
        log_dir=(cfg.state_dir / "logs").absolute(),
    )
    if cron_:
        target.log_dir.mkdir(parents=True, exist_ok=True)  # `>> file` fails in a missing folder
        files = {"emrops.crontab": crontab(target, jobs)}
    else:
        files = systemd_units(target, jobs, user)
    if out_dir is not None:
        for name, text in files.items():
            atomic.write_text(out_dir / name, text, mode=0o644)
        err_console.print(plain(f"wrote {', '.join(files)} to {out_dir.absolute()}"))
    if json_out:
        print_json({"kind": "cron" if cron_ else "systemd", "files": files})
    elif out_dir is None:
        for name, text in files.items():
            if len(files) > 1:
                typer.echo(f"# ---- {name} ----")
            typer.echo(text, nl=False)
