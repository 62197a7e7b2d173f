"""The terminal side of `emrops checklist run`: rich rendering and prompts (a RunnerIO),
and the resolver that checks `emrops ...` check commands against the real command tree."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from typer.exceptions import Exit, TyperException

from emrops.checklist.commands import CheckResult, EmropsResolver
from emrops.checklist.model import Checklist, Item
from emrops.checklist.store import ItemRecord, Run
from emrops.cli.render import plain, safe

OUTPUT_LINES = 12  # lines of check output shown on screen (the run file keeps more)

__all__ = ["RichIO", "plain", "safe"]  # plain/safe: re-exported for cli/checklist.py


class RichIO:
    """RunnerIO on a rich console (stderr: stdout stays for data). Reads answers from stdin."""

    def __init__(self, console: Console):
        self.console = console

    def show_item(self, item: Item, position: int, total: int, record: ItemRecord) -> None:
        c = self.console
        c.print()
        title = Text.assemble((f"[{position}/{total}] {safe(item.title)}", "bold"))
        title.append(f"  ({safe(item.id)})")
        c.rule(title, align="left")
        if record.status != "pending" or record.reason:
            c.print(plain(f"previously {record.status}: {record.reason or ''}", "yellow"))
        c.print(Markdown(safe(item.instructions)))
        if item.details:
            c.print(Markdown(safe(item.details)))
        if item.estimate:
            c.print(plain(f"estimate: {item.estimate}", "dim"))

    def check_started(self, item: Item, command: str) -> None:
        self.console.print(plain(f"Running check: {command}", "cyan"))

    def check_finished(self, item: Item, result: CheckResult) -> None:
        lines = result.output.rstrip().splitlines()
        shown = "\n".join(lines[-OUTPUT_LINES:])
        if len(lines) > OUTPUT_LINES:
            shown = f"... ({len(lines) - OUTPUT_LINES} more lines in the run file)\n" + shown
        style = "green" if result.passed else "red"
        title = plain(("PASSED" if result.passed else "FAILED") + f": {result.summary()}")
        # soft_wrap=False: the console's soft wrapping cropped every line of the panel at
        # the terminal's width ("first line of th"), the failure's own words cut off
        self.console.print(
            Panel(
                plain(shown or "(no output)"), title=title, title_align="left", border_style=style
            ),
            soft_wrap=False,
        )

    def choose(self, question: str, choices: list[str], default: str) -> str:
        keys = "/".join(f"[{c[0]}]{c[1:]}" for c in choices)
        while True:
            answer = self._input(f"{question} {keys} ({default}): ").strip().lower()
            if not answer:
                return default
            for choice in choices:
                if answer in (choice, choice[0]):
                    return choice
            self.console.print(f"[red]Please answer one of: {', '.join(choices)}[/red]")

    def ask_text(self, prompt: str, *, required: bool) -> str:
        suffix = "" if required else " (optional, Enter to leave empty)"
        while True:
            answer = self._input(f"{prompt}{suffix}: ").strip()
            if answer or not required:
                return answer
            self.console.print("[red]An answer is required.[/red]")

    def warn(self, message: str) -> None:
        self.console.print(plain(message, "yellow"))

    def _input(self, prompt: str) -> str:
        # markup=False: the prompt's [d]one keys are literal text, not rich markup
        self.console.print(safe(prompt), end="", markup=False, highlight=False)
        self.console.file.flush()
        return input()


def emrops_resolver(root: Any) -> EmropsResolver:
    """Validate `emrops WORDS...` against the command tree without running anything.

    Walks the groups, then lets the leaf command parse its arguments (unknown options,
    missing required options and bad values are reported) without invoking it. Typer
    vendors its own click, so this goes by duck typing (groups have ``list_commands``).
    """

    def resolve(args: list[str]) -> str | None:
        cmd = root
        path = ["emrops"]
        rest = list(args)
        while hasattr(cmd, "list_commands"):
            while rest and rest[0].startswith("-"):
                opt = rest.pop(0)
                param = _option(cmd, opt.split("=", 1)[0])
                if param is None:
                    return f"unknown option {opt} for `{' '.join(path)}`"
                if "=" not in opt and not getattr(param, "is_flag", False) and rest:
                    rest.pop(0)
            if not rest:
                return f"`{' '.join(path)}` needs a subcommand"
            name = rest.pop(0)
            sub = cmd.get_command(typer.Context(cmd), name)
            if sub is None:
                return f"emrops has no command `{' '.join([*path, name])}`"
            path.append(name)
            cmd = sub
        try:
            cmd.make_context(" ".join(path), rest, resilient_parsing=False)
        except Exit:
            return None  # --help and friends parse fine
        except TyperException as exc:
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            return f"`{' '.join(path)}`: {message}"
        return None

    return resolve


def _option(cmd: Any, opt: str) -> Any:
    for param in cmd.params:
        names = (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ()))
        if opt in names and opt.startswith("-"):
            return param
    return None


def checklists_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("name", "title", "items", "automatic", "environments", "estimate")
    for row in rows:
        if "error" in row:
            table.add_row(plain(row["name"]), plain(f"invalid: {row['error']}", "red"))
            continue
        table.add_row(
            plain(row["name"]),
            plain(row["title"]),
            str(row["items"]),
            str(row["automatic"]),
            plain(", ".join(row["environments"])),
            plain(row["estimate"] or ""),
        )
    return table


def items_table(c: Checklist, env: str | None) -> Table:
    """Every item; with an environment, the ones that do not apply are dimmed."""
    table = Table(
        "#", "id", "title", "kind", "check / when", title=plain(f"{c.title} (v{c.version})")
    )
    for s_no, section in enumerate(c.sections, 1):
        for i_no, item in enumerate(section.items, 1):
            kind = "auto" if item.check else "manual"
            extra = item.check.run if item.check else ""
            if item.when.env or item.when.env_not:
                extra = (extra + "  " if extra else "") + f"({item.when.describe()})"
            style = "dim" if env and not c.applies(item, env) else None
            table.add_row(
                f"{s_no}.{i_no}", plain(item.id), plain(item.title), kind, plain(extra), style=style
            )
    return table


def runs_table(runs: list[Run]) -> Table:
    table = Table("run id", "checklist", "env", "status", "progress", "started", "by")
    for r in runs:
        counts = r.counts()
        closed = counts["done"] + counts["skipped"] + counts["n/a"]
        table.add_row(
            plain(r.run_id),
            plain(r.checklist_id),
            plain(r.env or ""),
            plain(r.status),
            f"{closed}/{len(r.items)}",
            plain(r.started_at),
            plain(r.started_by["user"]),
        )
    return table


def run_table(run: Run) -> Table:
    table = Table(
        "item",
        "status",
        "method",
        "by",
        "at",
        "reason / evidence",
        title=plain(f"{run.checklist_title}: {run.status}"),
    )
    for rec in run.items:
        notes = [rec.reason or ""] + [f"{k}: {v}" for k, v in rec.evidence.items()]
        table.add_row(
            plain(rec.id),
            plain(rec.status),
            plain(rec.method or ""),
            plain(rec.by["user"] if rec.by else ""),
            plain(rec.at or ""),
            plain("; ".join(n for n in notes if n)),
        )
    return table
