"""``emrops doctor``: check that this set-up is ready (config, database, store, tools, keys)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from emrops.cli.app import CheckTimeoutOpt, JsonOpt, context, out_console, print_json
from emrops.errors import CheckFailed
from emrops.units import parse_duration, parse_size


def doctor(
    ctx: typer.Context,
    max_clock_skew: Annotated[
        str, typer.Option("--max-clock-skew", help="Largest tolerated database clock offset.")
    ] = "5s",
    min_free_disk: Annotated[
        str, typer.Option("--min-free-disk", help="Free space a local backup store needs.")
    ] = "100MB",
    timeout: CheckTimeoutOpt = "5s",
    json_out: JsonOpt = False,
) -> None:
    """Check the set-up: config, database reachability and schema revision, backup store
    (writable, free space), pg_dump/pg_restore against the server, the age identity/recipient
    pair, Azure credentials (only when an Azure store or subscription is configured), clock
    skew against the database, and the sim server's /ready (when sim.url is set).

    Exit 0 when every check passes (or does not apply), 3 naming each failed check with a hint.
    Example: emrops doctor --json
    """
    from emrops.health.doctor import DoctorOptions, run_doctor

    opts = DoctorOptions(
        max_clock_skew_s=parse_duration(max_clock_skew, what="--max-clock-skew"),
        min_free_bytes=parse_size(min_free_disk),
        timeout_s=parse_duration(timeout, what="--timeout"),
    )
    report = run_doctor(lambda: context(ctx).settings(), opts)
    if json_out:
        print_json(report)
    else:
        table = Table(title=f"emrops doctor on {report.host}")
        for column in ("check", "result", "detail", "hint"):
            table.add_column(column)
        for c in report.checks:
            mark = "[dim]skipped[/]" if c.skipped else ("[green]ok[/]" if c.ok else "[red]FAIL[/]")
            table.add_row(c.name, mark, c.detail, c.hint or "")
        out_console.print(table)
    if not report.ok:
        lines = [f"{c.name}: {c.detail} (try: {c.hint})" for c in report.failed]
        raise CheckFailed(
            f"{len(lines)} check(s) failed:\n  " + "\n  ".join(lines),
            hint="fix each failed check as its hint says, then run `emrops doctor` again",
        )
