"""``emrops config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import typer
from rich.table import Table

from emrops.cli.app import JsonOpt, make_app, out_console, print_json, settings
from emrops.cli.render import plain

app = make_app("Inspect the effective configuration.")


@app.command("show")
def show(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Print every setting, its value (secrets masked) and its source.

    Example: emrops --config /etc/emrops/emrops.toml config show --json
    """
    effective = settings(ctx)
    shown = effective.masked()
    data = {
        "config_file": str(effective.config_file) if effective.config_file else None,
        "settings": shown,
    }
    if json_out:
        print_json(data)
        return
    # values come from a file or the environment: never rich markup, never terminal escapes
    table = Table(title=plain(f"config file: {data['config_file'] or '(none)'}"))
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for key, item in shown.items():
        value = "" if item["value"] is None else str(item["value"])
        table.add_row(key, plain(value), plain(item["source"]))
    out_console.print(table)
