"""How every command's output looks on a terminal, in a pipe, and in ``--log-format json``.

- stdout (:class:`DataConsole`): on a terminal, rich tables as usual. When stdout is not a
  terminal (``| grep``, ``> file``, cron), a table is printed as tab-separated rows under a
  header row, cells never truncated or wrapped, whatever ``COLUMNS`` says (its title and
  caption go to stderr); other text is not wrapped either. Every command that prints a
  table goes through here, so a new column reaches scripts without any per-command code.
- stderr (:class:`StatusConsole`): with ``--log-format json`` each message becomes one JSON
  object per line (``level``, ``message``, ``run_id``), like the log lines; the final
  error is ``{"level": "error", "message", "hint", "exit_code", "run_id"}``.
- :class:`Ticker`: progress for long work. On a terminal a transient status line; elsewhere a
  one-line status at most every ``interval_s`` (a JSON ``progress`` event in JSON mode).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.table import Table
from rich.text import Text

from emrops import secrets
from emrops.logs import iso_utc, printable

_state: dict[str, Any] = {"json": False, "run_id": None}


def safe(text: str) -> str:
    """``text`` with every unsafe character written as a visible escape (``\\x1b``, ``\\u202e``);
    see emrops.logs.printable."""
    return printable(text)


def plain(text: str, style: str | None = None) -> Text:
    """Untrusted text for rich: escaped (see safe) and never read as markup."""
    return Text(safe(text), style=style or "")


def set_json_mode(on: bool, run_id: str | None = None) -> None:
    """Called once by the root command after ``--log-format`` is known."""
    _state["json"] = on
    _state["run_id"] = run_id


def json_mode() -> bool:
    return bool(_state["json"])


def json_line(level: str, message: str, **fields: Any) -> str:
    """One stderr line in JSON mode: ts, level, logger, run_id, message (+ fields), masked."""
    entry: dict[str, Any] = {
        "ts": iso_utc(),
        "level": level,
        "logger": "emrops.cli",
        "run_id": _state["run_id"],
        "message": secrets.mask(message),
    }
    for key, value in fields.items():
        entry[key] = secrets.mask(value) if isinstance(value, str) else value
    return json.dumps(entry, default=str)


def _cell_text(cell: Any) -> str:
    if isinstance(cell, Text):
        text = cell.plain
    elif isinstance(cell, str):
        try:
            text = Text.from_markup(cell).plain
        except Exception:  # not valid markup: the text as it is
            text = cell
    else:
        text = str(cell)
    # one row per line and one cell per tab, whatever a value holds
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "")


def table_tsv(table: Table) -> str:
    """A rich Table as a header row and tab-separated rows (no title, no truncation)."""
    header = [_cell_text(c.header) for c in table.columns]
    columns = [list(c.cells) for c in table.columns]
    rows = ["\t".join(header)]
    for index in range(table.row_count):
        rows.append(
            "\t".join(_cell_text(col[index]) if index < len(col) else "" for col in columns)
        )
    return "\n".join(rows) + "\n"


class DataConsole(Console):
    """stdout: tables become TSV when stdout is not a terminal; text is never wrapped there."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if self.is_terminal:
            for obj in objects:
                if isinstance(obj, Table) and not _fits_whole(self, obj):
                    if _fits_folded(self, obj):  # long words wrap inside their cells
                        for column in obj.columns:
                            column.overflow = "fold"
                        _literal_on_markup_error(super().print, (obj,), kwargs)
                    else:
                        self._records(obj)
                else:
                    _literal_on_markup_error(super().print, (obj,), kwargs)
            return
        for obj in objects:
            if isinstance(obj, Table):
                # the title and caption are for people: stderr, so stdout stays pure TSV
                for note in (obj.title, obj.caption):
                    if note:
                        text = _cell_text(note)
                        line = json_line("info", text) if json_mode() else secrets.mask(text)
                        sys.stderr.write(line + "\n")
                sys.stderr.flush()
                self.file.write(table_tsv(obj))
                self.file.flush()
            else:
                kwargs.setdefault("soft_wrap", True)
                _literal_on_markup_error(super().print, (obj,), kwargs)

    def _records(self, table: Table) -> None:
        """A table too wide for the terminal, one block per row: ``column: value`` lines.
        Rich shrank its columns to nothing (a 60-column terminal showed `schedule show`
        without its schedule and detail columns, a 40-column one cut checklist names to
        "re…"), so what a person needed to read or type was gone."""
        if table.title:
            super().print(_as_text(table.title), style="italic")
        columns = [(_as_text(c.header), list(c.cells)) for c in table.columns]
        for index in range(table.row_count):
            super().print()
            for header, cells in columns:
                value = _as_text(cells[index]) if index < len(cells) else Text("")
                line = Text.assemble((header.plain, "bold"), ": ", value)
                super().print(line, soft_wrap=False, overflow="fold")


def _literal_on_markup_error(print_: Any, objects: tuple[Any, ...], kwargs: Any) -> None:
    """Print; a message whose text is not valid markup (a path or name holding "[/x]"
    interpolated into it) is printed as the text it is, not "unexpected MarkupError"."""
    try:
        print_(*objects, **kwargs)
    except MarkupError:
        print_(*(plain(o) if isinstance(o, str) else o for o in objects), **kwargs)


def _fits_whole(console: Console, table: Table) -> bool:
    """Whether ``table`` fits with every word whole (rich cuts a longer one with "…":
    `config show` at 80 columns showed db_url as "sqlite:////tmp/ops/lv/a…")."""
    from rich.measure import Measurement

    unbounded = console.options.update_width(1_000_000)  # Table clamps its measure to the width
    return Measurement.get(console, unbounded, table).minimum <= console.width


def _fits_folded(console: Console, table: Table) -> bool:
    """Whether ``table`` can be drawn when long words are folded over lines: a ``no_wrap``
    column needs its longest line, a wrapping one a few characters, each column its
    padding and border."""
    from rich.cells import cell_len

    needed = 1
    for column in table.columns:
        texts = [_as_text(column.header).plain, *(_as_text(c).plain for c in column.cells)]
        lines = [line for text in texts for line in text.splitlines() or [""]]
        if column.no_wrap:
            width = max(cell_len(line) for line in lines)
        else:
            words = [cell_len(word) for line in lines for word in line.split()] or [0]
            width = min(max(words), _MIN_WRAPPED)
        needed += width + 3  # padding on both sides and a border
    return needed <= console.width


_MIN_WRAPPED = 8


def _as_text(cell: Any) -> Text:
    if isinstance(cell, Text):
        return cell
    if isinstance(cell, str):
        try:
            return Text.from_markup(cell)
        except Exception:  # not valid markup: the text as it is
            return Text(cell)
    return Text(str(cell))


class StatusConsole(Console):
    """stderr: in JSON mode each printed message is one JSON line (level from its prefix)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        if not json_mode():
            _literal_on_markup_error(super().print, objects, kwargs)
            return
        for obj in objects:
            if isinstance(obj, Table):
                lines = table_tsv(obj).splitlines()
            else:
                lines = [_cell_text(obj) if isinstance(obj, str | Text) else str(obj)]
            for line in lines:
                if not line.strip():
                    continue
                level = "warning" if line.lower().startswith("warning") else "info"
                self.file.write(json_line(level, line) + "\n")
        self.file.flush()


class Ticker:
    """Progress for long work: ``update(message, **fields)`` as often as you like.

    On a terminal the message replaces itself on one line (transient); otherwise it is written
    as a line at most every ``interval_s`` seconds (``force=True`` always writes: a phase
    change); in JSON mode the line is ``{"event": "progress", "message", ...fields}``.
    """

    def __init__(self, console: Console, interval_s: float = 5.0, quiet: bool = False) -> None:
        self.console = console
        self.interval_s = interval_s
        self.quiet = quiet
        self._last = 0.0
        self._status: Any = None

    def __enter__(self) -> Ticker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, message: str, *, force: bool = False, **fields: Any) -> None:
        if self.quiet:
            return
        if self.console.is_terminal and not json_mode():
            if self._status is None:
                self._status = self.console.status(message)
                self._status.start()
            else:
                self._status.update(message)
            return
        now = time.monotonic()
        if not force and self._last and now - self._last < self.interval_s:
            return
        self._last = now
        if json_mode():
            line = json_line("info", message, event="progress", **fields)
        else:
            line = secrets.mask(message)
        self.console.file.write(line + "\n")
        self.console.file.flush()

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def error_lines(message: str, hint: str | None, exit_code: int) -> list[str]:
    """The final lines of a failed command: ``Error:``/``Try:`` or one JSON object."""
    if json_mode():
        return [json_line("error", message, hint=hint, exit_code=exit_code)]
    # a message can quote a file name, a file's content or a server's reply: never
    # terminal escapes (an OSC sequence retitled the terminal, click strips only colours)
    lines = [f"Error: {printable(secrets.mask(message))}"]
    if hint:
        lines.append(f"Try: {printable(secrets.mask(hint))}")
    return lines


def json_wanted(argv: list[str]) -> bool:
    """Whether ``--log-format json`` (or EMROPS_LOG_FORMAT=json) is asked for, read from the
    raw arguments: a usage error happens before any option is parsed."""
    import os

    for index, word in enumerate(argv):
        if word == "--":
            break
        if word == "--log-format" and index + 1 < len(argv):
            return argv[index + 1] == "json"
        if word.startswith("--log-format="):
            return word.split("=", 1)[1] == "json"
    return os.environ.get("EMROPS_LOG_FORMAT") == "json"


def write_stderr(lines: list[str]) -> None:
    for line in lines:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()
