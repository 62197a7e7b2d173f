"""The root ``emrops`` command: global options and the command groups."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from emrops import __version__
from emrops.cli import doctor as doctor_cmd
from emrops.cli import health as health_cmd
from emrops.cli import render, streams
from emrops.cli.app import EmropsGroup, make_app
from emrops.config import LOG_LEVELS, ConfigContext, Settings
from emrops.logs import setup_logging

# Command groups, imported only when used: a cron job running `emrops backup run` should not
# pay for importing the migration, provisioning and load-test stacks (start-up time matters
# for every scheduled run and every CI step).
GROUPS: dict[str, tuple[str, str]] = {
    "config": ("emrops.cli.config_cmd", "Inspect the effective configuration."),
    "sim": ("emrops.cli.sim", "The EMRsim simulation server and its database."),
    "backup": ("emrops.cli.backup", "Back up, verify, list, rotate and restore the database."),
    "checklist": ("emrops.cli.checklist", "Interactive, resumable operational checklists."),
    "migrate-db": ("emrops.cli.migrate", "SQLite to PostgreSQL: plan, copy, verify, roll back."),
    "provision": ("emrops.cli.provision", "Provision Azure from the Bicep templates."),
    "deploy": ("emrops.cli.deploy", "Deploy to App Service slots; blue-green swap and rollback."),
    "benchmark": (
        "emrops.cli.benchmark",
        "Benchmark SQLite vs PostgreSQL; compare with a baseline.",
    ),
    "schedule": ("emrops.cli.schedule", "Scheduled backups: run, run-job, show, install."),
    "loadtest": ("emrops.cli.loadtest", "Load tests with budgets; compare with a baseline."),
    "sockets": ("emrops.cli.sockets", "WebSocket reliability probe across server restarts."),
}


class RootGroup(EmropsGroup):
    """The root group: loads a command group's module the first time it is asked for."""

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(GROUPS))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in GROUPS:
            module = importlib.import_module(GROUPS[cmd_name][0])
            command = typer.main.get_command(module.app)
            command.name = cmd_name
            command.help = command.help or GROUPS[cmd_name][1]
        return command


app = make_app(
    "emrops: operations toolkit for EMRsim-chat.\n\n"
    "Exit codes: 0 ok, 1 error, 2 usage or confirmation needed without a TTY, "
    "3 verification/budget/check failed, 4 changes pending, 75 busy (lock held), 130 interrupted.",
    cls=RootGroup,
)
app.command("health")(health_cmd.health)  # a single command; its core loads inside it
app.command("doctor")(doctor_cmd.doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"emrops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $EMROPS_CONFIG, ./emrops.toml, user config dir).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="Log format on stderr: text or json (for cron/CI)."),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """emrops: operations toolkit for EMRsim-chat."""
    import os

    fmt = log_format or os.environ.get("EMROPS_LOG_FORMAT") or "text"
    if fmt not in ("text", "json"):
        from emrops.errors import UsageError

        raise UsageError(f"invalid --log-format {fmt!r}", hint="use text or json")
    run_id = setup_logging(fmt, "debug" if debug else _env_level(os.environ))
    render.set_json_mode(fmt == "json", run_id)

    def apply_settings(settings: Settings) -> None:
        # flag > EMROPS_* > emrops.toml: load_settings already ranked them; --debug wins
        level = "debug" if debug else str(settings.get("log_level")).lower()
        chosen = str(settings.get("log_format"))
        setup_logging(chosen, level, run_id)
        render.set_json_mode(chosen == "json", run_id)

    ctx.obj = ConfigContext(
        config_file=config,
        debug=debug,
        log_format=log_format,
        run_id=run_id,
        on_first_load=apply_settings,
    )


def _env_level(env: Mapping[str, str]) -> str:
    """EMROPS_LOG_LEVEL until the settings are loaded; an unknown one is refused by
    load_settings, naming the variable, so it is read as info here."""
    level = (env.get("EMROPS_LOG_LEVEL") or "").strip().lower()
    return level if level in LOG_LEVELS else "info"


def run() -> None:
    """Console-script entry point."""
    from emrops.db.sqlite_malloc import disable_memstatus

    disable_memstatus()  # first, while no SQLite connection is open (parallel scans scale)
    streams.reopen_closed()  # before any file is opened: none may take fd 0, 1 or 2
    streams.guard_stdout()
    try:
        app(prog_name="emrops")
    except BrokenPipeError:  # stdout's reader went away while click flushed it
        streams.silence_stdout()
        raise SystemExit(1) from None
    except streams.OutputError as exc:  # --help or --version, written before any command
        streams.silence_stdout()
        for line in render.error_lines(exc.message, exc.hint, 1):
            typer.echo(line, err=True)
        raise SystemExit(1) from None
    finally:
        failed = streams.final_flush()
        if failed:  # the last of the output was not written: the command did not succeed
            for line in render.error_lines(failed, None, 1):
                typer.echo(line, err=True)
            raise SystemExit(1)
        # Everything is written and closed by now (atomic writes, atexit handlers still run):
        # spare the interpreter's final garbage collection a walk over every object the
        # command loaded, 0.15-0.2 s after a migration or backup.
        import gc

        gc.freeze()
