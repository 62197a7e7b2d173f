"""The CLI frame shared by every command group.

:class:`EmropsGroup` is the one place where expected failures become
``Error: ...`` / ``Try: ...`` on stderr with the documented exit code.
Helpers here give every command the same ``--json``, ``--out`` and ``--yes``
behaviour.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from emrops import atomic, secrets
from emrops.cli import render, streams
from emrops.config import ConfigContext, Settings
from emrops.errors import ConfirmationRequired, EmropsError, ExitCode

err_console: Console = render.StatusConsole(stderr=True, highlight=False, soft_wrap=True)
out_console: Console = render.DataConsole(highlight=False)


def _print_error(message: str, hint: str | None, exit_code: int = int(ExitCode.ERROR)) -> None:
    # typer.echo (not rich) so the exact line is stable for scripts and tests
    for line in render.error_lines(message, hint, exit_code):
        typer.echo(line, err=True)


class EmropsGroup(TyperGroup):
    """Turns EmropsError (and Ctrl-C) into a message on stderr and a documented exit code.

    With ``--log-format json`` click's own usage errors (unknown option, missing argument)
    become one JSON line too, so a log shipper can parse every failure.
    """

    def main(self, args: Any = None, prog_name: Any = None, *a: Any, **kw: Any) -> Any:
        with _sigterm_as_interrupt():
            return self._main(args, prog_name, *a, **kw)

    def _main(self, args: Any = None, prog_name: Any = None, *a: Any, **kw: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        wanted = render.json_wanted(argv)
        render.set_json_mode(wanted)
        if not wanted or kw.get("standalone_mode", True) is False:
            return super().main(argv, prog_name, *a, **kw)
        kw["standalone_mode"] = False
        try:
            rv = super().main(argv, prog_name, *a, **kw)
        except TyperException as exc:  # click's usage errors (typer vendors click)
            usage_ctx = getattr(exc, "ctx", None)
            hint = f"run `{usage_ctx.command_path} --help`" if usage_ctx is not None else None
            message = exc.format_message()
            if type(exc).__name__ == "NoArgsIsHelpError":
                message = "a command is needed"
            code = int(getattr(exc, "exit_code", ExitCode.USAGE))
            _print_error(message, hint, code)
            sys.exit(code)
        except Abort:
            _print_error("aborted", None, int(ExitCode.ERROR))
            sys.exit(int(ExitCode.ERROR))
        sys.exit(rv if isinstance(rv, int) else 0)

    def invoke(self, ctx: Any) -> Any:  # typer passes its own click Context
        try:
            return super().invoke(ctx)
        except EmropsError as exc:
            if _debug(ctx):
                traceback.print_exc()
            _print_error(exc.message, exc.hint, int(exc.exit_code))
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt as exc:
            what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            _print_error(what, None, int(ExitCode.INTERRUPTED))
            ctx.exit(int(ExitCode.INTERRUPTED))
        except (Exit, TyperException, Abort):
            raise
        except Exception as exc:  # a bug: say so plainly, traceback only with --debug
            if isinstance(exc, BrokenPipeError) and streams.stdout_gone():
                # `emrops ... | head -1`: the reader has what it wanted (a pipe to a child
                # process that broke is the command's own failure, reported below)
                streams.silence_stdout()
                ctx.exit(int(ExitCode.ERROR))
            if _debug(ctx):
                traceback.print_exc()
            known = _database_state(exc)
            if known is not None:  # the server's state or settings, not a bug
                _print_error(*known)
                ctx.exit(int(ExitCode.ERROR))
            logging.getLogger("emrops").debug("unexpected error", exc_info=True)
            _print_error(
                f"unexpected {type(exc).__name__}: {exc}",
                "rerun with --debug for the traceback, and report it",
            )
            ctx.exit(int(ExitCode.ERROR))


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C would be (see _sigterm_as_interrupt)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (CI cancelling a job, systemd or Kubernetes stopping it, `kill`) stops a command
    the way Ctrl-C does. Its default action ends the process on the spot: no cleanup runs, and
    what it started outlives it (a load test's generator processes went on sending the load
    for the rest of --duration; a checklist check or reload command, in its own session, ran
    on as an orphan). Raised in the main thread, cleanups run and children are stopped; exit
    130. A second SIGTERM is ignored while that cleanup runs (SIGKILL still ends it). Commands
    with their own handling (sim serve, schedule run, restore) install theirs over this one."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def stop(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error, also when SQLAlchemy wraps it (``.orig``)."""
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        state = getattr(candidate, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


# SQLSTATEs (exact, or a class by its first two characters) that say something about the
# server, its settings or the user's rights rather than about emrops: the step that met one
# has no handling of its own, and "unexpected ..." would send the user to report a bug
_DATABASE_STATES: dict[str, tuple[str, str]] = {
    "42501": (
        "permission denied by the database",
        "the database user lacks a privilege this command needs (see its --help); grant it, "
        "or run as a user that has it",
    ),
    "57014": (
        "PostgreSQL cancelled a statement",
        "a statement_timeout (PGOPTIONS, the URL's options, ALTER ROLE/DATABASE ... SET) or "
        "pg_cancel_backend() stopped it; raise or unset the timeout for emrops's user and run "
        "it again (commands that write keep their own journal or roll back)",
    ),
    "57P": (
        "the database server ended the session (shutdown, restart or pg_terminate_backend)",
        "wait until it accepts connections again and run the command again",
    ),
    "08": (
        "the connection to the database was lost",
        "check that the server is up and reachable, then run the command again",
    ),
    "53": (
        "the database server ran out of a resource (disk, memory or connections)",
        "free it on the server (see the message), then run the command again",
    ),
}


def _database_state(exc: BaseException) -> tuple[str, str] | None:
    """(message, hint) for a driver error that :data:`_DATABASE_STATES` knows, else None."""
    state = _sqlstate(exc)
    if state is None:
        return None
    known = _DATABASE_STATES.get(state) or _DATABASE_STATES.get(state[:3])
    known = known or _DATABASE_STATES.get(state[:2])
    if known is None:
        return None
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{known[0]}: {secrets.mask(text[0]) if text else type(exc).__name__}", known[1]


def _debug(ctx: Any) -> bool:
    root = ctx.find_root()
    obj = root.obj
    return bool(isinstance(obj, ConfigContext) and obj.debug)


def make_app(help_text: str, cls: type[EmropsGroup] = EmropsGroup) -> typer.Typer:
    """A Typer group with the emrops error handling and no rich tracebacks."""
    app = typer.Typer(
        cls=cls,
        help=help_text,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def group() -> None:
        # A callback keeps a one-command group a group (`emrops config show`, not `emrops config`);
        # a module that needs group options registers its own callback, which replaces this one.
        pass

    return app


def context(ctx: typer.Context) -> ConfigContext:
    """The global options collected by the root callback."""
    obj = ctx.find_root().obj
    if not isinstance(obj, ConfigContext):
        obj = ConfigContext()
        ctx.find_root().obj = obj
    return obj


def settings(ctx: typer.Context, **flags: Any) -> Settings:
    """Effective settings for this command; ``flags`` are dotted keys given on the command line."""
    return context(ctx).settings(**flags)


# Shared option types, so every command spells them the same way.
CheckTimeoutOpt = Annotated[  # health and doctor: each network check's bound
    str,
    typer.Option(
        "--timeout",
        help="Each network check's wait: an HTTP request, a database connection (5s).",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout (nothing else).")
]


def output_file(value: Path | None) -> Path | None:
    """Option callback: refuse an output path that cannot become a file before any work."""
    if value is not None:
        try:
            atomic.check_file_path(value)
        except EmropsError as exc:
            raise typer.BadParameter(exc.message) from None
    return value


def output_folder(value: Path) -> Path:
    """Option callback: refuse a folder path under a file, or naming a file, before any work."""
    try:
        atomic.check_folder_path(value)
    except EmropsError as exc:
        raise typer.BadParameter(exc.message) from None
    return value


OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="Also write the result as JSON to this file.",
        dir_okay=False,
        callback=output_file,
    ),
]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="Database URL: sqlite:///path or postgresql+psycopg://user@host/db."),
]


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, paths and datetimes to plain JSON values, secrets masked in strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [to_jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return secrets.mask(value)
    return value


def print_json(data: Any) -> None:
    """Write ``data`` as JSON to stdout: the only thing a --json command prints there."""
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2) + "\n")
    sys.stdout.flush()


def write_out(path: Path | None, data: Any) -> None:
    """Write a result file atomically, mode 0600 like every report and state file emrops writes
    (secrets are masked, but hosts, URLs and run details are still nobody else's business)."""
    if path is not None:
        atomic.write_json(path, to_jsonable(data), mode=0o600)


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive step; without a TTY, require --yes (exit 2)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfirmationRequired(
            f"{question.rstrip('?')}: confirmation needed but stdin is not a terminal",
            hint="rerun with --yes to confirm",
        )
    if not typer.confirm(question, default=False, err=True):
        raise EmropsError("aborted: not confirmed")
