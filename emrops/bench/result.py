"""The benchmark result document: building it, its JSON schema (version 1), loading it back.

The schema is documented in docs/benchmark.md; bump ``SCHEMA_VERSION`` on any incompatible
change. Latencies are integer microseconds; each repeat keeps its per-operation HdrHistograms
encoded (``histogram``), so ``compare`` can merge them instead of averaging percentiles.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import jsonschema

from emrops.bench.runner import CellRun
from emrops.errors import UsageError
from emrops.stats.histogram import LatencyHistogram, merge_all

SCHEMA_ID = "emrops.benchmark.result"
SCHEMA_VERSION = 1

_LATENCY = {
    "type": "object",
    "required": ["count", "min_us", "p50_us", "p95_us", "p99_us", "max_us", "mean_us"],
    "properties": {
        k: {"type": "number", "minimum": 0}
        for k in ("count", "min_us", "p50_us", "p95_us", "p99_us", "max_us", "mean_us")
    },
}
_COUNTS = {
    "count": {"type": "integer", "minimum": 0},
    "errors": {"type": "integer", "minimum": 0},
    "busy": {"type": "integer", "minimum": 0},
    "ops_per_s": {"type": "number", "minimum": 0},
}
_OP_RUN = {
    "type": "object",
    "required": ["count", "errors", "busy", "ops_per_s", "latency", "histogram"],
    "properties": {**_COUNTS, "latency": _LATENCY, "histogram": {"type": "string"}},
}
_SPREAD = {
    "type": "object",
    "required": ["median", "min", "max", "spread"],
    "properties": {k: {"type": "number", "minimum": 0} for k in ("median", "min", "max", "spread")},
}
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "emrops benchmark result",
    "type": "object",
    "required": [
        "schema",
        "schema_version",
        "created_at",
        "emrops_version",
        "machine",
        "config",
        "engines",
        "warnings",
        "cells",
    ],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "schema_version": {"const": SCHEMA_VERSION},
        "created_at": {"type": "string"},
        "emrops_version": {"type": "string"},
        "machine": {"type": "object"},
        "config": {
            "type": "object",
            "required": [
                "workload",
                "clients",
                "duration_s",
                "warmup_s",
                "repeat",
                "sessions",
                "messages_per_session",
            ],
            "properties": {
                "workload": {"enum": ["chat", "read", "write", "mixed"]},
                "clients": {
                    "type": "array",
                    "items": {"type": "integer", "minimum": 1},
                    "minItems": 1,
                },
                "duration_s": {"type": "number", "exclusiveMinimum": 0},
                "warmup_s": {"type": "number", "minimum": 0},
                "repeat": {"type": "integer", "minimum": 1},
                "sessions": {"type": "integer", "minimum": 1},
                "messages_per_session": {"type": "integer", "minimum": 1},
            },
        },
        "engines": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["label", "engine", "db", "version", "settings", "durability", "seed"],
                "properties": {
                    "label": {"type": "string"},
                    "engine": {"enum": ["sqlite", "postgresql"]},
                    "durability": {"enum": ["none", "recent", "full"]},
                    "settings": {"type": "object"},
                    "seed": {"type": "object"},
                },
            },
        },
        "warnings": {"type": "array", "items": {"type": "string"}},
        "cells": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["engine", "clients", "repeats", "summary"],
                "properties": {
                    "engine": {"type": "string"},
                    "clients": {"type": "integer", "minimum": 1},
                    "repeats": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": [
                                *_COUNTS,
                                "duration_s",
                                "client_cpu_pct",
                                "ops",
                                "error_samples",
                            ],
                            "properties": {
                                **_COUNTS,
                                "duration_s": {"type": "number", "exclusiveMinimum": 0},
                                "client_cpu_pct": {"type": "number", "minimum": 0},
                                "processes": {"type": "integer", "minimum": 1},
                                "client_cpu_s": {"type": "array", "items": {"type": "number"}},
                                "cpu_share": {"type": "number", "minimum": 0},
                                "client_bound": {"type": "boolean"},
                                "window_unix": {
                                    "type": "array",
                                    "items": {"type": "number"},
                                    "minItems": 2,
                                    "maxItems": 2,
                                },
                                "ops": {"type": "object", "additionalProperties": _OP_RUN},
                                "error_samples": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                    },
                    "summary": {
                        "type": "object",
                        "required": ["ops_per_s", "latency", "errors", "busy", "ops"],
                        "properties": {
                            "ops_per_s": _SPREAD,
                            "latency": _LATENCY,
                            "errors": {"type": "integer", "minimum": 0},
                            "busy": {"type": "integer", "minimum": 0},
                            "client_cpu_pct": {"type": "number", "minimum": 0},
                            "cpu_share": {"type": "number", "minimum": 0},
                            "client_bound": {"type": "boolean"},
                            "ops": {
                                "type": "object",
                                "additionalProperties": {
                                    "type": "object",
                                    "required": ["ops_per_s", "latency"],
                                    "properties": {"ops_per_s": _SPREAD, "latency": _LATENCY},
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


def spread(values: list[float]) -> dict[str, float]:
    """Median, min, max and relative range of per-repeat values."""
    median = float(statistics.median(values))
    width = max(values) - min(values)
    return {
        "median": round(median, 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "spread": round(width / median, 4) if median else 0.0,
    }


def repeat_doc(run: CellRun) -> dict[str, Any]:
    """One measured repeat as stored in the result file."""
    return {
        "count": run.count,
        "errors": run.errors,
        "busy": run.busy,
        "ops_per_s": round(run.ops_per_s, 3),
        "duration_s": run.duration_s,
        "client_cpu_pct": round(run.client_cpu_pct, 1),
        "processes": run.processes,
        "client_cpu_s": [round(c, 3) for c in run.cpu_seconds],
        "cpu_share": round(run.cpu_share, 3),
        "client_bound": run.client_bound,
        "window_unix": [round(run.window[0], 3), round(run.window[1], 3)],
        "ops": {
            name: {
                "count": s.count,
                "errors": s.errors,
                "busy": s.busy,
                "ops_per_s": round(s.count / run.duration_s, 3),
                "latency": s.histogram.summary().as_dict(),
                "histogram": s.histogram.encode(),
            }
            for name, s in run.ops.items()
        },
        "error_samples": run.error_samples,
    }


def cell_doc(engine: str, clients: int, runs: list[CellRun]) -> dict[str, Any]:
    """A cell (engine x clients) with its repeats and their summary over repeats."""
    names = sorted({name for r in runs for name in r.ops})
    summary_ops = {}
    for name in names:
        hists = [r.ops[name].histogram for r in runs if name in r.ops]
        summary_ops[name] = {
            "ops_per_s": spread(
                [(r.ops[name].count if name in r.ops else 0) / r.duration_s for r in runs]
            ),
            "latency": merge_all(hists).summary().as_dict(),
        }
    return {
        "engine": engine,
        "clients": clients,
        "repeats": [repeat_doc(r) for r in runs],
        "summary": {
            "ops_per_s": spread([r.ops_per_s for r in runs]),
            "latency": merge_all(r.all_ops() for r in runs).summary().as_dict(),
            "errors": sum(r.errors for r in runs),
            "busy": sum(r.busy for r in runs),
            "client_cpu_pct": round(statistics.median(r.client_cpu_pct for r in runs), 1),
            "cpu_share": round(statistics.median(r.cpu_share for r in runs), 3),
            "client_bound": any(r.client_bound for r in runs),
            "ops": summary_ops,
        },
    }


def validate(doc: Any, source: str = "result") -> dict[str, Any]:
    """Check a result document against the schema; UsageError naming the first problem."""
    if not isinstance(doc, dict):
        raise UsageError(f"{source} is not a benchmark result (expected a JSON object)")
    if doc.get("schema") != SCHEMA_ID:
        raise UsageError(
            f"{source} is not a benchmark result (schema is {doc.get('schema')!r})",
            hint="pass files written by `emrops benchmark run --out FILE`",
        )
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{source} has schema_version {doc.get('schema_version')!r}; "
            f"this emrops reads version {SCHEMA_VERSION}",
            hint="rerun the benchmark with this emrops version",
        )
    try:
        jsonschema.validate(doc, SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise UsageError(
            f"{source} does not match the result schema at {where}: {exc.message}"
        ) from None
    return doc


def load(path: Path) -> dict[str, Any]:
    """Read and validate a result file; UsageError for a missing, non-JSON or invalid file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"result file not found: {path}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # arrays nested thousands deep
        raise UsageError(f"{path} is nested too deeply to read") from None
    return validate(doc, str(path))


def repeat_histograms(repeat: dict[str, Any]) -> dict[str, LatencyHistogram]:
    """A stored repeat's per-op histograms, decoded, plus ``all`` (every op merged)."""
    hists = {name: LatencyHistogram.decode(op["histogram"]) for name, op in repeat["ops"].items()}
    hists["all"] = merge_all(hists.values())
    return hists
