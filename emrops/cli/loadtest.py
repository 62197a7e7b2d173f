"""``emrops loadtest``: open-model load tests with budgets (run) and baseline comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table
from rich.text import Text

from emrops.cli import render
from emrops.cli.app import (
    JsonOpt,
    OutOpt,
    err_console,
    make_app,
    out_console,
    output_file,
    print_json,
    write_out,
)
from emrops.cli.app import settings as get_settings
from emrops.errors import CheckFailed, UsageError
from emrops.units import parse_duration, parse_percent, parse_rate

app = make_app("Load tests against the sim server: run with budgets, compare with a baseline.")


def _progress_line(progress: Any, plan_rate: float | None) -> Text:
    totals = progress.totals
    done = totals.get("ok", 0) + totals.get("errors", 0)
    elapsed = max(progress.elapsed, 1e-9)
    p95 = progress.live_percentile_ms(95)
    return Text(
        f"{progress.elapsed:5.1f}s  {done / elapsed:7.1f} req/s"
        + (f" (target {plan_rate:g}/s)" if plan_rate else "")
        + f"  p95 {p95:7.1f}ms  errors {totals.get('errors', 0)}"
        + f"  late {totals.get('late', 0)}  dropped {totals.get('dropped', 0)}"
    )


def _periodic(ticker: render.Ticker, plan_rate: float | None) -> Any:
    """Progress callback for non-terminals: p95 over every latency since the last line."""
    window: list[int] = []
    last = {"t": 0.0}

    def on_progress(progress: Any) -> None:
        window.extend(progress.live)
        if progress.elapsed - last["t"] < ticker.interval_s:
            return
        last["t"] = progress.elapsed
        progress.live = list(window)
        window.clear()
        totals = progress.totals
        done = totals.get("ok", 0) + totals.get("errors", 0)
        ticker.update(
            _progress_line(progress, plan_rate).plain.strip(),
            force=True,
            elapsed_s=round(progress.elapsed, 1),
            rps=round(done / max(progress.elapsed, 1e-9), 1),
            errors=totals.get("errors", 0),
            p95_ms=round(progress.live_percentile_ms(95), 1),
        )

    return on_progress


def _table(result: dict[str, Any]) -> Table:
    s = result["summary"]
    table = Table(title=f"loadtest {result['config']['scenario']} ({result['config']['model']})")
    for col in ("step", "requests", "errors", "rps", "p50", "p95", "p99", "max"):
        table.add_column(col, justify="left" if col == "step" else "right")

    def row(name: str, block: dict[str, Any], count: int) -> None:
        lat = block["latency"]
        table.add_row(
            name,
            str(count),
            str(block["errors"]),
            f"{block['rps']:.1f}",
            *(f"{lat[k]:.1f}ms" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")),
        )

    row("all", s, s["completed"])
    for step, block in s["steps"].items():
        row(step, block, block["count"])
    return table


def _render(result: dict[str, Any]) -> None:
    s = result["summary"]
    out_console.print(_table(result))
    out_console.print(
        f"scheduled {s['scheduled']}, sent {s['sent']}, late {s['late']} "
        f"({s['late_rate']:.2%}), dropped {s['dropped']} ({s['drop_rate']:.2%}), "
        f"error rate {s['error_rate']:.2%}" + (f" {s['error_kinds']}" if s["error_kinds"] else "")
    )
    if len(s["targets"]) > 1:
        out_console.print(
            "targets: " + ", ".join(f"{t['url']} {t['requests']}" for t in s["targets"])
        )
    for b in result["budgets"]:
        mark = "[green]pass[/green]" if b["passed"] else "[red]FAIL[/red]"
        from emrops.loadtest.budgets import format_value

        shown = "no requests" if b["actual"] is None else format_value(b["metric"], b["actual"])
        out_console.print(f"budget {b['expr']}: {mark} ({shown})")


JunitOpt = Annotated[
    Path | None,
    typer.Option(
        "--junit",
        help="Write JUnit XML (one testcase per budget).",
        dir_okay=False,
        callback=output_file,
    ),
]


@app.command("run")
def run(
    ctx: typer.Context,
    url: Annotated[
        list[str],
        typer.Option(
            "--url",
            metavar="URL",
            help="Sim server base URL; repeat for round-robin over several instances.",
        ),
    ],
    scenario: Annotated[
        str, typer.Option("--scenario", help="health, chat, history, ws-chat or mixed.")
    ] = "chat",
    rate: Annotated[
        str | None,
        typer.Option(
            "--rate", help="Open model: requests per second over all processes, e.g. 200/s."
        ),
    ] = None,
    closed: Annotated[
        int | None,
        typer.Option("--closed", help="Closed model with N virtual users (max-throughput runs)."),
    ] = None,
    duration: Annotated[str, typer.Option("--duration", help="Measured time per repeat.")] = "30s",
    warmup: Annotated[
        str, typer.Option("--warmup", help="Not recorded, before the first repeat.")
    ] = "0s",
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat", help="Consecutive measured windows (for compare's noise estimate)."
        ),
    ] = 1,
    processes: Annotated[
        str,
        typer.Option("--processes", help="Generator processes: a number or auto (one per core)."),
    ] = "1",
    budget: Annotated[
        list[str] | None,
        typer.Option(
            "--budget",
            metavar="EXPR",
            help="Budget such as 'p95<2s', 'error_rate<1%', 'chat.p99<3s'.",
        ),
    ] = None,
    budgets_file: Annotated[
        Path | None,
        typer.Option("--budgets", help="TOML file with a [budgets] table.", dir_okay=False),
    ] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Per-request timeout.")] = "10s",
    max_inflight: Annotated[
        int,
        typer.Option(
            "--max-inflight",
            help="Open model: requests waiting at once before new ones are dropped.",
        ),
    ] = 1000,
    late_after: Annotated[
        str,
        typer.Option(
            "--late-after", help="A request sent later than this after its intended start is late."
        ),
    ] = "20ms",
    sessions: Annotated[
        int, typer.Option("--sessions", help="Sessions (and WebSockets) per URL and process.")
    ] = 4,
    junit: JunitOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a load test; exit 3 when a budget is broken.

    Example: emrops loadtest run --url http://127.0.0.1:8000 --scenario chat --rate 50/s
    --duration 60s --warmup 10s --budget 'p95<2s' --budget 'error_rate<1%' --out run.json
    """
    from emrops.loadtest import junit as junit_mod
    from emrops.loadtest.run import LoadtestOptions, run_loadtest
    from emrops.loadtest.workers import resolve_processes

    if processes != "auto" and not processes.isdigit():
        raise UsageError(f"invalid --processes {processes!r}", hint="a number or auto")
    opts = LoadtestOptions(
        urls=url,
        scenario=scenario,
        rate=parse_rate(rate) if rate is not None else None,
        closed=closed,
        duration=parse_duration(duration, what="--duration"),
        warmup=parse_duration(warmup, what="--warmup"),
        repeat=repeat,
        processes=resolve_processes(processes),
        timeout=parse_duration(timeout, what="--timeout"),
        max_inflight=max_inflight,
        late_after=parse_duration(late_after, what="--late-after"),
        sessions=sessions,
        budget_exprs=budget or [],
        budgets_file=budgets_file,
        token=get_settings(ctx).get("sim.token"),
    )
    if err_console.is_terminal and not json_out and not render.json_mode():
        with Live(Text("starting..."), console=err_console, transient=True) as live:
            result = run_loadtest(opts, lambda p: live.update(_progress_line(p, opts.rate)))
    else:  # a pipe, a log file, CI: one status line every 5 s (a JSON event with --log-format)
        with render.Ticker(err_console, interval_s=5.0) as ticker:
            result = run_loadtest(opts, _periodic(ticker, opts.rate))
    write_out(out, result)
    if junit is not None:
        junit_mod.write(junit, result)
    if json_out:
        print_json(result)
    else:
        _render(result)
    for reason in result["generator"]["unreliable_reasons"]:
        err_console.print(f"[yellow]Warning: result unreliable: {reason}[/yellow]")
    broken = [b for b in result["budgets"] if not b["passed"]]
    if broken:
        from emrops.loadtest.budgets import format_value

        names = ", ".join(
            f"{b['expr']} ({'no requests' if b['actual'] is None else format_value(b['metric'], b['actual'])})"  # noqa: E501
            for b in broken
        )
        raise CheckFailed(f"budget broken: {names}", hint="see the result table above")


@app.command("export")
def export_cmd(
    scenario: Annotated[
        str, typer.Option("--scenario", help="health, chat, history or mixed.")
    ] = "mixed",
    fmt: Annotated[str, typer.Option("--format", help="Output format: locust.")] = "locust",
    rate: Annotated[
        str | None, typer.Option("--rate", help="Total request rate over all users, e.g. 50/s.")
    ] = None,
    budget: Annotated[
        list[str] | None,
        typer.Option("--budget", help="Budget checked when Locust quits (exit 3), repeatable."),
    ] = None,
    budgets_file: Annotated[
        Path | None, typer.Option("--budgets", help="TOML file with a [budgets] table.")
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Locustfile to write.", dir_okay=False, callback=output_file),
    ] = Path("locustfile.py"),
    json_out: JsonOpt = False,
) -> None:
    """Write a locustfile with the same journeys, request mix, rate and budgets.

    Example: emrops loadtest export --format locust --scenario mixed --rate 200/s
    --budget 'p95<2s' --out locustfile.py && locust -f locustfile.py --headless -u 40
    -r 40 -t 5m --processes -1 --host https://emrsim.example.org
    """
    from emrops import atomic
    from emrops.loadtest import budgets as budgets_mod
    from emrops.loadtest import locust

    if fmt != "locust":
        raise UsageError(f"unknown --format {fmt!r}", hint="only locust is supported")
    parsed = [budgets_mod.parse_budget(b) for b in budget or []]
    if budgets_file is not None:
        parsed += budgets_mod.load_file(budgets_file)
    result = locust.export(scenario, parse_rate(rate) if rate else None, parsed)
    atomic.write_text(out, result.text, mode=0o644)
    info = {
        "format": fmt,
        "scenario": scenario,
        "rate": result.rate,
        "budgets": [b.expr for b in result.budgets],
        "out": str(out),
    }
    if json_out:
        print_json(info)
    else:
        err_console.print(f"wrote {out}: run it with `locust -f {out} --headless --host URL ...`")


@app.command("cloud")
def cloud_cmd(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", help="Sim server the engines load (Locust host).")],
    env: Annotated[
        str | None, typer.Option("--env", help="Take the endpoint from ENV's provision outputs.")
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option("--endpoint", help="Load Testing data-plane host (https).")
    ] = None,
    scenario: Annotated[str, typer.Option("--scenario", help="health, chat, history or mixed.")] = (
        "mixed"
    ),
    rate: Annotated[str | None, typer.Option("--rate", help="Total rate over all engines.")] = None,
    engines: Annotated[int, typer.Option("--engines", help="Engine instances.")] = 1,
    users: Annotated[int, typer.Option("--users", help="Locust users per engine.")] = 10,
    duration: Annotated[str, typer.Option("--duration", help="Run time, e.g. 5m.")] = "60s",
    budget: Annotated[
        list[str] | None, typer.Option("--budget", help="Budget as a pass/fail criterion.")
    ] = None,
    budgets_file: Annotated[
        Path | None, typer.Option("--budgets", help="TOML file with a [budgets] table.")
    ] = None,
    test_id: Annotated[str | None, typer.Option("--test-id", help="Test id to reuse.")] = None,
    token_secret_uri: Annotated[
        str | None,
        typer.Option("--token-secret-uri", help="Key Vault secret URI of the sim token."),
    ] = None,
    poll_interval: Annotated[
        str, typer.Option("--poll-interval", help="How often to poll the run.")
    ] = "5s",
    junit: JunitOpt = None,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the journeys on Azure Load Testing with N engines; exit 3 when a budget breaks.

    Example: emrops loadtest cloud --env production --url https://emrsim.example.org
    --scenario mixed --engines 4 --users 50 --duration 10m --budget 'p95<2s' --junit lt.xml
    """
    from emrops.loadtest import budgets as budgets_mod
    from emrops.loadtest import cloud, locust
    from emrops.loadtest import junit as junit_mod
    from emrops.provision.apply import read_outputs
    from emrops.provision.arm import credential_for

    cfg = get_settings(ctx)
    parsed = [budgets_mod.parse_budget(b) for b in budget or []]
    if budgets_file is not None:
        parsed += budgets_mod.load_file(budgets_file)
    if endpoint is None:
        if env is None:
            raise UsageError("no Load Testing endpoint", hint="pass --env ENV or --endpoint HOST")
        endpoint = str(read_outputs(cfg, env).get("outputs", {}).get("loadTestingDataPlaneUri"))
        if not endpoint or endpoint == "None":
            raise UsageError(
                f"{env} has no Azure Load Testing resource",
                hint="set loadTestingEnabled = true in its environment file and apply",
            )
    # every engine runs the file as its own Locust: each takes an equal share of the rate
    per_engine = parse_rate(rate) / max(1, engines) if rate else None
    exported = locust.export(scenario, per_engine, parsed)
    opts = cloud.CloudOptions(
        endpoint=endpoint,
        target_url=url,
        scenario=scenario,
        locustfile=exported.text,
        budgets=parsed,
        engines=engines,
        users=users,
        spawn_rate=users,
        duration_s=parse_duration(duration, what="--duration"),
        test_id=test_id or "",
        token_secret_uri=token_secret_uri,
        poll_interval=parse_duration(poll_interval, what="--poll-interval"),
    )

    def progress(run: dict[str, Any]) -> None:
        if not json_out:
            err_console.print(f"run {run.get('testRunId')}: {run.get('status')}")

    result = cloud.run_cloud(opts, credential_for(cfg), progress)
    write_out(out, result)
    if junit is not None:
        junit_mod.write(junit, result)
    if json_out:
        print_json(result)
    else:
        out_console.print(_table(result))
        from emrops.loadtest.budgets import format_value

        for b in result["budgets"]:
            mark = "[green]pass[/green]" if b["passed"] else "[red]FAIL[/red]"
            shown = "-" if b["actual"] is None else format_value(b["metric"], b["actual"])
            out_console.print(f"budget {b['expr']}: {mark} ({shown})")
    broken = [b["expr"] for b in result["budgets"] if not b["passed"]]
    if broken or result["run"]["test_result"] == "FAILED":
        raise CheckFailed(
            "budget broken: " + (", ".join(broken) or "the run's pass/fail criteria failed"),
            hint=f"see the run in the portal: {result['run']['portal_url'] or 'Azure portal'}",
        )


@app.command("compare")
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline result (loadtest run --out).")],
    result: Annotated[Path, typer.Argument(help="New result to judge against it.")],
    max_regression: Annotated[
        str,
        typer.Option(
            "--max-regression", help="Allowed worsening of a metric, beyond the run-to-run spread."
        ),
    ] = "10%",
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare a result with a baseline; exit 3 on a regression.

    Example: emrops loadtest compare baseline.json run.json --max-regression 10%
    """
    from emrops.loadtest.result import compare_results, load

    report = compare_results(
        load(baseline),
        load(result),
        parse_percent(max_regression),
        names=(str(baseline), str(result)),
    )
    data = report.as_dict()
    write_out(out, data)
    if json_out:
        print_json(data)
    else:
        table = Table(title=f"compare (max regression {report.comparison.max_regression:.0%})")
        for col in ("metric", "baseline", "result", "change", "spread", "verdict"):
            table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
        for d in report.comparison.deltas:
            unit = "" if d.name in ("rps", "error_rate") else "ms"
            scale = 1 if unit == "" else 1 / 1000

            def num(x: float | None, scale: float = scale, unit: str = unit) -> str:
                return "-" if x is None else f"{x * scale:.3g}{unit}"

            change = "-" if d.change is None else f"{d.change:+.1%}"
            color = {"regressed": "red", "improved": "green"}.get(d.verdict.value, "default")
            table.add_row(
                d.name,
                num(d.baseline),
                num(d.result),
                change,
                f"{d.spread:.1%}",
                f"[{color}]{d.verdict.value}[/{color}]",
            )
        out_console.print(table)
    for diff in report.config_differences:
        err_console.print(f"[yellow]Warning: runs differ in {diff}[/yellow]")
    if report.comparison.regressed:
        names = ", ".join(d.name for d in report.comparison.regressions)
        raise CheckFailed(
            f"regression beyond {max_regression}: {names}",
            hint="inspect the table; rerun with --repeat 3+ to separate noise",
        )
