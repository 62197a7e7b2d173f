"""``emrops benchmark``: SQLite versus PostgreSQL on EMRsim's own query mix, and regressions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from emrops.cli.app import (
    JsonOpt,
    OutOpt,
    err_console,
    make_app,
    out_console,
    output_file,
    print_json,
    settings,
    write_out,
)
from emrops.errors import CheckFailed, UsageError
from emrops.units import parse_duration, parse_percent

app = make_app("Benchmark SQLite and PostgreSQL on EMRsim's query mix; compare with a baseline.")


def _clients(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(
            f"invalid --clients {text!r}: use comma-separated whole numbers",
            hint="e.g. --clients 1,4,16,64",
        ) from None
    if not values or any(v < 1 for v in values):
        raise UsageError(
            f"invalid --clients {text!r}: every client count must be at least 1",
            hint="e.g. --clients 1,4,16,64",
        )
    if any(v > MAX_CLIENTS for v in values):  # each is a thread with its own connection
        raise UsageError(
            f"invalid --clients {text!r}: at most {MAX_CLIENTS:,} clients",
            hint="e.g. --clients 1,4,16,64",
        )
    return values


MAX_CLIENTS = 10_000


def _processes(text: str) -> int | None:
    """None for auto (one per core), else a whole number >= 1."""
    if text.strip().lower() == "auto":
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise UsageError(f"invalid --processes {text!r}", hint="a number (at least 1) or auto")
    return int(text)


@app.command("run")
def run(
    ctx: typer.Context,
    db: Annotated[
        list[str] | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Where to benchmark (repeatable): sqlite:///dir/x.db creates a scratch file "
            "beside x.db; postgresql+psycopg://user@host/db creates a scratch database on that "
            "server. Existing data is never touched. Default: the configured database.",
        ),
    ] = None,
    workload: Annotated[
        str,
        typer.Option(
            "--workload",
            "-w",
            metavar="NAME",
            help="chat, read, write, mixed (80/20) or point-select (calibration, like pgbench -S).",
        ),
    ] = "chat",
    clients: Annotated[
        str, typer.Option("--clients", metavar="N,N,...", help="Comma-separated client counts.")
    ] = "1,4,16,64",
    duration: Annotated[
        str,
        typer.Option("--duration", metavar="DURATION", help="Measured time per cell, e.g. 20s."),
    ] = "20s",
    warmup: Annotated[
        str,
        typer.Option("--warmup", metavar="DURATION", help="Discarded warm-up per cell, e.g. 5s."),
    ] = "5s",
    repeat: Annotated[int, typer.Option("--repeat", help="Repeats per cell (spread).")] = 3,
    sessions: Annotated[int, typer.Option("--sessions", help="Seeded sessions.")] = 2000,
    messages_per_session: Annotated[
        int, typer.Option("--messages-per-session", help="Seeded messages per session.")
    ] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Random seed for data and clients.")] = 1,
    sqlite_synchronous: Annotated[
        str | None,
        typer.Option(
            "--sqlite-synchronous",
            help="normal (the app's default) or full (parity with synchronous_commit=on).",
        ),
    ] = None,
    processes: Annotated[
        str,
        typer.Option(
            "--processes",
            metavar="N|auto",
            help="Client processes the clients are spread over: a number or auto (one per core).",
        ),
    ] = "auto",
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Draw throughput and p95 against clients into this PNG.",
            dir_okay=False,
            callback=output_file,
        ),
    ] = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a workload on each database at each client count; print a table, write results.

    Example: emrops benchmark run --db sqlite:///var/bench.db
    --db postgresql+psycopg://postgres@127.0.0.1/postgres --workload chat --clients 1,4,16
    --duration 20s --repeat 3 --out bench.json --plot bench.png
    """
    from emrops.bench.api import BenchOptions, run_benchmark
    from emrops.bench.report import crossover, run_table

    if plot is not None and plot.suffix.lower() != ".png":
        raise UsageError(f"--plot {plot}: the plot is a PNG file", hint="e.g. --plot bench.png")
    opts = BenchOptions(
        dbs=list(db) if db else [settings(ctx).db_url],
        workload=workload,
        clients=_clients(clients),
        duration_s=parse_duration(duration, what="--duration"),
        warmup_s=parse_duration(warmup, what="--warmup"),
        repeat=repeat,
        sessions=sessions,
        messages_per_session=messages_per_session,
        seed=seed,
        sqlite_synchronous=sqlite_synchronous.lower() if sqlite_synchronous else None,
        processes=_processes(processes),
    )
    opts.validate()
    from emrops.cli.render import Ticker

    with Ticker(err_console, interval_s=5.0) as ticker:
        # every message is a phase (a seed, a cell): shown at once, also in a pipe or a log
        doc = run_benchmark(opts, progress=lambda msg: ticker.update(msg, force=True))
    write_out(out, doc)
    if plot is not None:
        from emrops.bench.plot import plot as draw

        draw(doc, plot)
    if json_out:
        print_json(doc)
        return
    out_console.print(run_table(doc))
    found = crossover(doc)
    if found:
        out_console.print(found)
    for warning in doc["warnings"]:
        err_console.print(f"[yellow]Warning:[/] {warning}")
    for cell in doc["cells"]:
        for rep in cell["repeats"]:
            for sample in rep["error_samples"][:1]:
                err_console.print(f"[yellow]{cell['engine']}/{cell['clients']} error:[/] {sample}")


@app.command("compare")
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline result file (benchmark run --out).")],
    result: Annotated[Path, typer.Argument(help="New result file.")],
    max_regression: Annotated[
        str, typer.Option("--max-regression", help="Allowed worsening, e.g. 10%.")
    ] = "10%",
    all_rows: Annotated[bool, typer.Option("--all", help="Also list unchanged latencies.")] = False,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare a result with a baseline; exit 3 when any operation regressed.

    A metric regresses only when it is worse by more than --max-regression AND by more than
    the run-to-run spread of the repeats.

    Example: emrops benchmark compare baseline.json bench.json --max-regression 10%
    """
    from emrops.bench import result as result_file
    from emrops.bench.compare import compare_results, config_differences
    from emrops.bench.report import compare_table

    threshold = parse_percent(max_regression)
    base_doc = result_file.load(baseline)
    new_doc = result_file.load(result)
    comparison = compare_results(base_doc, new_doc, threshold)
    notes = config_differences(base_doc, new_doc)
    data = {
        **comparison.as_dict(),
        "baseline": str(baseline),
        "result": str(result),
        "notes": notes,
    }
    write_out(out, data)
    if json_out:
        print_json(data)
    else:
        out_console.print(compare_table(comparison, all_rows=all_rows))
        for note in notes:
            err_console.print(f"[yellow]Note:[/] {note}")
    if comparison.regressed:
        names = ", ".join(d.name for d in comparison.regressions[:5])
        more = len(comparison.regressions) - 5
        raise CheckFailed(
            f"{len(comparison.regressions)} metric(s) regressed beyond {threshold:.0%} and the "
            f"run-to-run spread: {names}" + (f" and {more} more" if more > 0 else ""),
            hint="look at the deltas above; rerun with more --repeat if the spread is large",
        )
