"""The root ``emrops`` command: global options and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from emrops import __version__
from emrops.cli import checklist, config_cmd, sim
from emrops.cli.app import make_app
from emrops.config import ConfigContext
from emrops.logs import setup_logging

app = make_app(
    "emrops: operations toolkit for EMRsim-chat.\n\n"
    "Exit codes: 0 ok, 1 error, 2 usage or confirmation needed without a TTY, "
    "3 verification/budget/check failed, 4 changes pending, 75 busy (lock held), 130 interrupted."
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(sim.app, name="sim")
app.add_typer(checklist.app, name="checklist")


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
    run_id = setup_logging(fmt, "debug" if debug else os.environ.get("EMROPS_LOG_LEVEL", "info"))
    ctx.obj = ConfigContext(config_file=config, debug=debug, log_format=log_format, run_id=run_id)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="emrops")
