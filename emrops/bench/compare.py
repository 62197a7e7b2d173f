"""``benchmark compare``: turn two result files into per-metric series and compare them with
:mod:`emrops.stats.compare` (threshold *and* run-to-run spread; percentiles from merged
histograms, never averaged).

Metrics, for every (engine, clients) cell and every operation plus ``all``:
``<engine>/c<clients>/<op>/ops_per_s`` (higher is better) and ``.../p50``, ``.../p95``,
``.../p99`` latency in µs (lower is better).
"""

from __future__ import annotations

from typing import Any

from emrops.bench.result import repeat_histograms
from emrops.errors import UsageError
from emrops.stats.compare import Better, Comparison, Series, compare, latency_series

PERCENTILES = (50.0, 95.0, 99.0)


def metrics(doc: dict[str, Any]) -> dict[str, Series]:
    """Every comparable metric of a (validated) result document, in a stable order."""
    out: dict[str, Series] = {}
    for cell in doc["cells"]:
        prefix = f"{cell['engine']}/c{cell['clients']}"
        repeats = cell["repeats"]
        hists = [repeat_histograms(r) for r in repeats]
        names = ["all", *sorted({n for r in repeats for n in r["ops"]})]
        for name in names:
            if name == "all":
                rates = [r["ops_per_s"] for r in repeats]
            else:
                rates = [r["ops"][name]["ops_per_s"] if name in r["ops"] else 0.0 for r in repeats]
            out[f"{prefix}/{name}/ops_per_s"] = Series.of(rates, Better.HIGHER)
            with_values = [h[name] for h in hists if name in h and h[name].count]
            if not with_values:
                continue
            for p in PERCENTILES:
                out[f"{prefix}/{name}/p{p:g}"] = latency_series(with_values, p)
    return out


def compare_results(
    baseline: dict[str, Any], result: dict[str, Any], max_regression: float
) -> Comparison:
    """Compare two validated result documents. UsageError when they measure different things."""
    b, r = baseline["config"], result["config"]
    if b["workload"] != r["workload"]:
        raise UsageError(
            f"the files measure different workloads: {b['workload']} (baseline) and "
            f"{r['workload']} (result)",
            hint="compare results of the same --workload",
        )
    return compare(metrics(baseline), metrics(result), max_regression)


def config_differences(baseline: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """Settings that differ between the runs and make the comparison less meaningful."""
    notes = []
    for key in ("duration_s", "warmup_s", "sessions", "messages_per_session", "sqlite_synchronous"):
        if baseline["config"].get(key) != result["config"].get(key):
            notes.append(
                f"{key} differs: {baseline['config'].get(key)} (baseline) vs "
                f"{result['config'].get(key)} (result)"
            )
    base_eng = {e["label"]: e for e in baseline["engines"]}
    for e in result["engines"]:
        old = base_eng.get(e["label"])
        if old and old["durability"] != e["durability"]:
            notes.append(
                f"{e['label']} durability differs: {old['durability']} (baseline) vs "
                f"{e['durability']} (result)"
            )
        if old and old["version"] != e["version"]:
            notes.append(f"{e['label']} version differs: {old['version']} vs {e['version']}")
    return notes
