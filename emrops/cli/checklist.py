"""``emrops checklist``: list, show, validate, run, status, report, export and docs."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from emrops import atomic
from emrops.checklist import export as exporter
from emrops.checklist import loader, report
from emrops.checklist.commands import preflight
from emrops.checklist.runner import Runner, check_resumable, default_check_fn, new_run, resolve_env
from emrops.checklist.store import TERMINAL, Run, RunStore
from emrops.cli import checklist_ui as ui
from emrops.cli.app import (
    JsonOpt,
    context,
    err_console,
    make_app,
    out_console,
    output_file,
    output_folder,
    print_json,
    settings,
)
from emrops.errors import ChangesPending, CheckFailed, UsageError

app = make_app("Executable, resumable checklists: deployment, migration, recovery drill.")

NameArg = Annotated[
    str, typer.Argument(help="Checklist name (see `list`) or path to a .yaml file.")
]
EnvOpt = Annotated[str | None, typer.Option("--env", help="Environment, e.g. staging.")]


def _store(ctx: typer.Context) -> RunStore:
    return RunStore.for_state_dir(settings(ctx).state_dir)


@app.command("list")
def list_(json_out: JsonOpt = False) -> None:
    """List the checklists (bundled ones and files given by path are both runnable).

    Example: emrops checklist list --json
    """
    rows = loader.summaries(loader.search_dirs())
    if json_out:
        print_json(rows)
        return
    out_console.print(ui.checklists_table(rows))


@app.command("show")
def show(name: NameArg, env: EnvOpt = None, json_out: JsonOpt = False) -> None:
    """Show a checklist's items; with --env, which of them apply.

    Example: emrops checklist show production-deployment --env staging
    """
    c = loader.load(name)
    if json_out:
        sys.stdout.write(exporter.as_json(c))
        return
    out_console.print(ui.items_table(c, env))


@app.command("validate")
def validate(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="Names or paths.")],
    env: EnvOpt = None,
) -> None:
    """Validate checklists: schema, ids, and that every check command exists here (exit 2).

    Example: emrops checklist validate production-deployment ./my-checklist.yaml
    """
    problems = []
    for name in names:
        c = loader.load(name)
        ids = {i.id for i in c.items if c.applies(i, env)} if env else {i.id for i in c.items}
        found = preflight(c, env, ui.emrops_resolver(ctx.find_root().command), ids)
        if not found:
            err_console.print(ui.plain(f"{c.path}: ok ({len(c.items)} items)"))
        problems += found
    if problems:
        raise UsageError(
            "invalid check commands:\n" + "\n".join(problems),
            hint="fix the `check: run:` lines named above",
        )


def _interactive(flag: bool | None) -> bool:
    if flag is not None:
        return flag  # an explicit --interactive / --non-interactive always wins
    ci = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
    return sys.stdin.isatty() and not ci


@app.command("run")
def run(
    ctx: typer.Context,
    name: NameArg,
    env: EnvOpt = None,
    interactive: Annotated[
        bool | None,
        typer.Option(
            "--interactive/--non-interactive",
            help="Ask a person (default at a terminal) or run only automatic checks (default "
            "without a TTY or when CI is set).",
        ),
    ] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Continue this run id.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Resume even though the checklist file changed.")
    ] = False,
    require_complete: Annotated[
        bool, typer.Option("--require-complete", help="Exit 3 when items are left pending.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Walk a checklist: run checks, ask for confirmations and evidence, save after each item.

    Exit 3 when an item failed (or, with --require-complete, is still pending).
    Example: emrops checklist run production-deployment --env staging
    """
    c = loader.load(name)
    store = _store(ctx)
    if resume:
        the_run = store.load(resume)
        check_resumable(c, the_run, env, force)
    else:
        the_run = new_run(c, resolve_env(c, env), "interactive")
    mode = _interactive(interactive)
    todo = {r.id for r in the_run.items if r.status not in TERMINAL}
    problems = preflight(c, the_run.env, ui.emrops_resolver(ctx.find_root().command), todo)
    if problems:
        raise UsageError(
            "checklist has check commands that cannot run here:\n" + "\n".join(problems),
            hint="fix the `check: run:` lines named above",
        )
    extra_env = {}
    if context(ctx).config_file:
        extra_env["EMROPS_CONFIG"] = str(Path(context(ctx).config_file or "").resolve())
    header = ui.plain(c.title, "bold")
    header.append(
        ui.safe(
            f"  run {the_run.run_id}  env {the_run.env or '-'}  "
            f"({'interactive' if mode else 'non-interactive'})"
        )
    )
    err_console.print(header)
    with store.locked(the_run.run_id), _hangup_as_interrupt():
        runner = Runner(
            c, the_run, store, ui.RichIO(err_console), mode, default_check_fn(extra_env)
        )
        done = runner.execute()
    _finish(done, store, require_complete, json_out)


class HangUp(KeyboardInterrupt):
    """SIGHUP: the terminal running the checklist closed (an ssh session dropped)."""


@contextlib.contextmanager
def _hangup_as_interrupt() -> Iterator[None]:
    """SIGHUP stops the run as Ctrl-C does: the running check (in its own session, so the
    hang-up never reaches it) is killed and the run saved as interrupted. Its default action
    ended emrops alone: the check went on as an orphan and the run stayed "in-progress"."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hang_up(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # one is enough; cleanup runs now
        raise HangUp

    previous = signal.signal(signal.SIGHUP, hang_up)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def _finish(done: Run, store: RunStore, require_complete: bool, json_out: bool) -> None:
    counts = done.counts()
    summary = {
        "run_id": done.run_id,
        "checklist": done.checklist_id,
        "env": done.env,
        "status": done.status,
        "counts": counts,
        "failed": done.ids("failed"),
        "pending": done.ids("pending"),
        "run_file": str(store.path(done.run_id)),
    }
    if json_out:
        print_json(summary)
    err_console.print(
        ui.plain(
            f"run {done.run_id}: {done.status}; "
            + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        )
    )
    for rec in done.items:
        if rec.status == "pending":
            err_console.print(
                ui.plain(f"  pending: {rec.id}: {rec.title} ({rec.reason or 'not done'})")
            )
    resume_hint = f"emrops checklist run {done.checklist_id} --resume {done.run_id}"
    if done.status == "paused":
        err_console.print(ui.plain(f"Paused. Resume with: {resume_hint}"))
    if counts["failed"]:
        raise CheckFailed(
            f"{counts['failed']} item(s) failed: {', '.join(done.ids('failed'))}",
            hint=f"emrops checklist report {done.run_id} --format md",
        )
    if require_complete and counts["pending"]:
        raise CheckFailed(
            f"{counts['pending']} item(s) still pending: {', '.join(done.ids('pending'))}",
            hint=resume_hint,
        )


@app.command("status")
def status(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Argument(help="A run id; omit to list runs.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List checklist runs, or show one run item by item.

    Example: emrops checklist status 20261125T191900Z-3fa2c1
    """
    store = _store(ctx)
    if run_id is None:
        skipped: list[str] = []
        runs = store.list(skipped)
        for problem in skipped:
            err_console.print(f"Warning: skipped {problem}", markup=False, highlight=False)
        if json_out:
            print_json([r.summary() for r in runs])
        else:
            out_console.print(ui.runs_table(runs))
        return
    the_run = store.load(run_id)
    if json_out:
        print_json(the_run.to_dict())
    else:
        out_console.print(ui.run_table(the_run))


FormatOpt = Annotated[str, typer.Option("--format", "-f", help="md, json or junit.")]
FileOut = Annotated[
    Path | None,
    typer.Option("--out", help="Write to this file.", dir_okay=False, callback=output_file),
]


def _emit(text: str, out: Path | None) -> None:
    if out is None:
        sys.stdout.write(text)
    else:
        atomic.write_text(out, text, mode=0o600)
        err_console.print(ui.plain(f"wrote {out}"))


@app.command("report")
def report_(ctx: typer.Context, run_id: str, fmt: FormatOpt = "md", out: FileOut = None) -> None:
    """Report a run as Markdown, JSON or JUnit XML (one testcase per item, for CI).

    Example: emrops checklist report 20261125T191900Z-3fa2c1 --format junit --out checklist.xml
    """
    if fmt not in report.FORMATS:
        raise UsageError(f"unknown report format {fmt!r}", hint="use md, json or junit")
    _emit(report.render(_store(ctx).load(run_id), fmt), out)


@app.command("export")
def export(
    name: NameArg,
    fmt: FormatOpt = "md",
    out: FileOut = None,
    quick: Annotated[bool, typer.Option("--quick", help="Fold the details away.")] = False,
) -> None:
    """Render a checklist as a document (Markdown) or as its parsed JSON.

    Example: emrops checklist export recovery-drill --format md --out RECOVERY.md
    """
    if fmt not in ("md", "json"):
        raise UsageError(f"unknown export format {fmt!r}", hint="use md or json")
    c = loader.load(name)
    _emit(exporter.markdown(c, quick=quick) if fmt == "md" else exporter.as_json(c), out)


@app.command("docs")
def docs(
    folder: Annotated[
        Path, typer.Option("--dir", help="Where the documents go.", callback=output_folder)
    ] = Path("docs"),
    check: Annotated[
        bool, typer.Option("--check", help="Only check they are up to date (exit 4 when not).")
    ] = False,
) -> None:
    """Regenerate the deployment documents (DEPLOYMENT_GUIDE.md, ...) from the checklists.

    Example: emrops checklist docs --dir docs --check
    """
    if check:
        stale = exporter.stale_docs(folder)
        if stale:
            raise ChangesPending(
                f"out of date in {folder}: {', '.join(stale)}",
                hint=f"emrops checklist docs --dir {folder}",
            )
        err_console.print(ui.plain(f"{folder}: {len(exporter.DOCS)} documents up to date"))
        return
    changed = exporter.write_docs(folder)
    err_console.print(
        ui.plain(
            f"{folder}: {len(changed)} of {len(exporter.DOCS)} documents rewritten"
            + (f" ({', '.join(changed)})" if changed else "")
        )
    )
