"""``emrops config``: show the effective configuration and where each value came from."""

from __future__ import annotations

import typer
from rich.table import Table

from emrops.cli.app import JsonOpt, make_app, out_console, print_json, settings

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
    table = Table(title=f"config file: {data['config_file'] or '(none)'}")
    table.add_column("setting")
    table.add_column("value")
    table.add_column("source")
    for key, item in shown.items():
        table.add_row(key, "" if item["value"] is None else str(item["value"]), item["source"])
    out_console.print(table)
