"""``emrops sockets``: WebSocket reliability probe across server restarts."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from emrops.cli.app import (
    JsonOpt,
    OutOpt,
    err_console,
    make_app,
    out_console,
    print_json,
    write_out,
)
from emrops.cli.app import settings as get_settings
from emrops.errors import CheckFailed, EmropsError
from emrops.units import parse_duration, parse_rate

app = make_app("WebSocket reliability: clients that reconnect and resume, across restarts.")


def _render(report: dict[str, Any], verbose: bool) -> None:
    if verbose:
        _client_table(report)
    t, w, rt = report["totals"], report["writer"], report["reconnect_time"]
    out_console.print(
        f"messages expected {t['expected']}, received {t['received']}, lost {t['lost']}, "
        f"duplicated {t['duplicated']}, out of order {t['out_of_order']}; "
        f"reconnects {t['reconnects']} (p50 {rt['p50_s']:.3f}s, p95 {rt['p95_s']:.3f}s, "
        f"max {rt['max_s']:.3f}s); writer posted {w['posted']}, refused {w['refused']}, "
        f"failed {w['failed']}; restarts {len(report['restarts'])}"
    )
    if report["reconnecting_clients"]:
        out_console.print(
            f"{report['reconnecting_clients']} client(s) still reconnecting at the end, "
            f"{t['reconnecting_missing']} message(s) not yet delivered to them (not counted "
            "as lost: they resume from their last message id)"
        )


def _client_table(report: dict[str, Any]) -> None:
    table = Table(title="sockets probe: per client")
    for col in (
        "client",
        "state",
        "expect",
        "recv",
        "lost",
        "pending",
        "dup",
        "ooo",
        "reconn",
        "p50",
        "p95",
        "max",
    ):
        table.add_column(col, justify="right")
    for row in report["clients"]:
        rt = row["reconnect_time"]
        table.add_row(
            str(row["client"]),
            row["state"],
            str(row["expected"]),
            str(row["received"]),
            str(row["lost"]),
            str(row["reconnecting_missing"]),
            str(row["duplicated"]),
            str(row["out_of_order"]),
            str(row["reconnects"]),
            f"{rt['p50_s']:.2f}s",
            f"{rt['p95_s']:.2f}s",
            f"{rt['max_s']:.2f}s",
        )
    out_console.print(table)


@app.command("probe")
def probe(
    ctx: typer.Context,
    url: Annotated[
        str,
        typer.Option("--url", help="Sim server base URL; the WebSocket URL is derived from it."),
    ],
    clients: Annotated[int, typer.Option("--clients", help="WebSocket clients.")] = 50,
    duration: Annotated[str, typer.Option("--duration", help="How long the writer posts.")] = "60s",
    sessions: Annotated[
        int | None,
        typer.Option("--sessions", help="Sessions the clients share (default: min(clients, 10))."),
    ] = None,
    rate: Annotated[str, typer.Option("--rate", help="Writer posts per second.")] = "10/s",
    restart_cmd: Annotated[
        str | None,
        typer.Option(
            "--restart-cmd",
            help="Command that restarts the server (split like a shell, run without one).",
        ),
    ] = None,
    restart_every: Annotated[
        str | None, typer.Option("--restart-every", help="Run --restart-cmd this often, e.g. 20s.")
    ] = None,
    settle: Annotated[
        str, typer.Option("--settle", help="Time for clients to catch up after the writer stops.")
    ] = "15s",
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print the per-client table.")
    ] = False,
    out: OutOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Probe WebSocket delivery; exit 3 when a message was lost or duplicated, or a client got
    frames that are not the simulation server's. Prints a
    summary; --verbose adds one row per client (--json always has them). A client still
    reconnecting when the probe ends is reported as reconnecting: what it has not received
    yet is pending, not lost (lost = not delivered after the client resumed).

    Example: emrops sockets probe --url http://127.0.0.1:8000 --clients 50 --duration 60s
    --restart-cmd 'sudo systemctl restart emrsim' --restart-every 20s
    """
    from emrops.httpurl import check_url
    from emrops.sockets.probe import ProbeOptions, run_probe

    opts = ProbeOptions(
        url=check_url(url),
        clients=clients,
        duration=parse_duration(duration, what="--duration"),
        sessions=sessions,
        rate=parse_rate(rate),
        restart_cmd=restart_cmd,
        restart_every=parse_duration(restart_every, what="--restart-every")
        if restart_every is not None
        else None,
        settle=parse_duration(settle, what="--settle"),
        token=get_settings(ctx).get("sim.token"),
    )
    if not json_out:
        err_console.print(f"probing {url} with {clients} clients for {duration}...")
    report = run_probe(opts)
    write_out(out, report)
    if json_out:
        print_json(report)
    else:
        _render(report, verbose)
    if report["restart_failures"]:
        bad = next(r for r in report["restarts"] if r["exit_code"] != 0)
        raise EmropsError(
            f"--restart-cmd failed {report['restart_failures']} time(s) (exit {bad['exit_code']})",
            hint=f"its output: {bad['output'].strip()[-300:] or '(none)'}",
        )
    t = report["totals"]
    if t["lost"] or t["duplicated"]:
        raise CheckFailed(
            f"WebSocket delivery broken: {t['lost']} lost, {t['duplicated']} duplicated",
            hint="rerun with --verbose for the per-client table (or read --out/--json)",
        )
    if not report["passed"]:  # frames that are not the sim server's: --json said passed false
        raise CheckFailed(
            f"WebSocket delivery broken: {t['protocol_errors']} client(s) got frames that are "
            "not the simulation server's",
            hint="is --url a proxy or another service? rerun with --verbose for each client's "
            "protocol error",
        )
