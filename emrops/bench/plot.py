"""``--plot``: throughput and p95 latency against clients, one line per engine (matplotlib Agg)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.errors import UsageError


def plot(doc: dict[str, Any], path: Path) -> Path:
    """Draw the result document's cells into a PNG at ``path``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: CI, cron, SSH
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"--plot {path}: the plot is a PNG file", hint="e.g. --plot bench.png")
    fig, (ax_tps, ax_p95) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    labels = [e["label"] for e in doc["engines"]]
    for label in labels:
        cells = sorted(
            (c for c in doc["cells"] if c["engine"] == label), key=lambda c: c["clients"]
        )
        xs = [c["clients"] for c in cells]
        med = [c["summary"]["ops_per_s"]["median"] for c in cells]
        low = [m - c["summary"]["ops_per_s"]["min"] for m, c in zip(med, cells, strict=True)]
        high = [c["summary"]["ops_per_s"]["max"] - m for m, c in zip(med, cells, strict=True)]
        ax_tps.errorbar(xs, med, yerr=[low, high], marker="o", capsize=3, label=label)
        p95 = [c["summary"]["latency"]["p95_us"] / 1000.0 for c in cells]
        ax_p95.plot(xs, p95, marker="o", label=label)
    cfg = doc["config"]
    for ax, title, unit in (
        (ax_tps, "throughput (median of repeats, min-max bars)", "operations/s"),
        (ax_p95, "p95 latency (merged histogram)", "ms"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_xticks(cfg["clients"], [str(c) for c in cfg["clients"]])
        ax.set_xlabel("clients")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_p95.set_yscale("log")
    ax_p95.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax_p95.yaxis.set_major_formatter(ScalarFormatter())
    ax_p95.yaxis.set_minor_formatter(NullFormatter())
    fig.suptitle(
        f"emrops benchmark: {cfg['workload']} workload, {cfg['duration_s']:g}s x "
        f"{cfg['repeat']} repeats, {cfg['sessions']} sessions",
        fontsize=11,
    )
    path = Path(path)
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    plt.close(fig)
    atomic.write_bytes(path, image.getvalue(), mode=0o644)  # a chart is not secret
    return path
