"""Tables people read: the run table (engine x clients) and the compare table (deltas).

Rich renderables only; the CLI decides where they go.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from emrops.stats.compare import Comparison, Verdict


def _ms(us: float) -> str:
    ms = us / 1000
    return f"{ms:.2f}" if ms < 100 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def run_table(doc: dict[str, Any]) -> Table:
    """engine x clients: ops/s (median, spread), p50/p95/p99 ms, errors, busy, client CPU and
    ``client_bound`` (the clients used more than 80 % of their CPU share: they set the pace)."""
    cfg = doc["config"]
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        title=f"{cfg['workload']} workload: {cfg['duration_s']:g}s x {cfg['repeat']} repeat(s), "
        f"warm-up {cfg['warmup_s']:g}s, {cfg['sessions']} sessions, "
        f"up to {cfg.get('processes', 1)} client process(es)",
    )
    for col in ("engine", "clients", "ops/s", "spread", "p50 ms", "p95 ms", "p99 ms"):
        table.add_column(col, justify="left" if col == "engine" else "right", no_wrap=True)
    for col in ("err", "busy", "cpu", "bound"):
        table.add_column(col, justify="right", no_wrap=True)
    for cell in doc["cells"]:
        s = cell["summary"]
        lat = s["latency"]
        table.add_row(
            cell["engine"],
            str(cell["clients"]),
            f"{s['ops_per_s']['median']:.0f}",
            f"{s['ops_per_s']['spread']:.0%}",
            _ms(lat["p50_us"]),
            _ms(lat["p95_us"]),
            _ms(lat["p99_us"]),
            str(s["errors"]),
            str(s["busy"]),
            f"{s.get('client_cpu_pct', 0):.0f}%",
            "client" if s.get("client_bound") else "",
        )
    return table


def crossover(doc: dict[str, Any]) -> str | None:
    """Where PostgreSQL's median throughput overtakes SQLite's, if both engines were run; says
    whether the lead is beyond the repeats' min-max ranges or within them (not conclusive)."""
    by_engine: dict[str, dict[int, dict[str, float]]] = {}
    engines = {e["label"]: e["engine"] for e in doc["engines"]}
    for cell in doc["cells"]:
        kind = engines.get(cell["engine"], "?")
        by_engine.setdefault(kind, {}).setdefault(cell["clients"], cell["summary"]["ops_per_s"])
    lite, pg = by_engine.get("sqlite"), by_engine.get("postgresql")
    if not lite or not pg:
        return None
    common = [n for n in sorted(pg) if n in lite]
    ratios = ", ".join(
        f"{n}: {pg[n]['median'] / lite[n]['median']:.2f}x" for n in common if lite[n]["median"]
    )
    clear = [n for n in common if pg[n]["min"] > lite[n]["max"]]
    ahead = [n for n in common if pg[n]["median"] > lite[n]["median"] and n not in clear]
    if clear:
        verdict = f"PostgreSQL clearly overtakes SQLite at {', '.join(map(str, clear))} client(s)"
    elif ahead:
        verdict = (
            f"PostgreSQL's median is ahead at {', '.join(map(str, ahead))} client(s), but within "
            "the run-to-run spread (not conclusive)"
        )
    else:
        verdict = "PostgreSQL does not overtake SQLite at any measured client count"
    return f"{verdict}; PostgreSQL/SQLite median throughput by clients: {ratios}"


_STYLE = {
    Verdict.REGRESSED: "bold red",
    Verdict.IMPROVED: "green",
    Verdict.NOISE: "yellow",
    Verdict.MISSING: "magenta",
    Verdict.NEW: "cyan",
    Verdict.UNCHANGED: "",
}


def _value(name: str, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if name.endswith("ops_per_s") else _ms(value)


def compare_table(comparison: Comparison, *, all_rows: bool = False) -> Table:
    """The deltas; by default only rows that are not ``unchanged`` (plus every throughput row)."""
    table = Table(
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        title=f"compare (max regression {comparison.max_regression:.0%})",
    )
    for col in ("metric", "baseline", "result", "change", "spread", "verdict"):
        table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
    for d in comparison.deltas:
        if not all_rows and d.verdict is Verdict.UNCHANGED and not d.name.endswith("ops_per_s"):
            continue
        unit = "" if d.name.endswith("ops_per_s") else " ms"
        change = "-" if d.change is None else f"{d.change:+.1%}"
        table.add_row(
            d.name,
            _value(d.name, d.baseline) + (unit if d.baseline is not None else ""),
            _value(d.name, d.result) + (unit if d.result is not None else ""),
            change,
            f"{d.spread:.1%}",
            d.verdict.value,
            style=_STYLE[d.verdict],
        )
    return table
