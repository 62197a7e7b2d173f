"""Helpers for the benchmark tests: synthetic result documents and scratch-database listing."""

from __future__ import annotations

from typing import Any

import psycopg

from emrops.bench import result
from emrops.bench.runner import CellRun, OpStats
from emrops.stats.histogram import LatencyHistogram
from tests.conftest import PG_ADMIN_DSN


def scratch_databases() -> set[str]:
    """Every benchmark scratch database on the test server right now."""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'emrops\\_bench\\_%'"
        ).fetchall()
    return {r[0] for r in rows}


def synthetic_run(ops_per_s: float, latency_us: int, *, duration: float = 10.0) -> CellRun:
    """A measured repeat with ``ops_per_s`` chat exchanges, all taking about ``latency_us``."""
    count = int(ops_per_s * duration)
    ops = {}
    for name in ("chat.exchange", "chat.last50"):
        h = LatencyHistogram()
        h.record_us(latency_us, count // 2)
        ops[name] = OpStats(histogram=h)
    return CellRun(clients=4, duration_s=duration, ops=ops, client_cpu_pct=50.0, error_samples=[])


def synthetic_doc(repeats: list[tuple[float, int]], workload: str = "chat") -> dict[str, Any]:
    """A valid result document with one sqlite cell (4 clients) made of ``repeats``."""
    runs = [synthetic_run(rate, lat) for rate, lat in repeats]
    doc = {
        "schema": result.SCHEMA_ID,
        "schema_version": result.SCHEMA_VERSION,
        "created_at": "2026-11-25T20:00:00+00:00",
        "emrops_version": "0.1.0",
        "machine": {},
        "config": {
            "workload": workload,
            "clients": [4],
            "duration_s": 10.0,
            "warmup_s": 1.0,
            "repeat": len(runs),
            "sessions": 100,
            "messages_per_session": 50,
        },
        "engines": [
            {
                "label": "sqlite",
                "engine": "sqlite",
                "db": "sqlite:///x.db",
                "version": "3.40.1",
                "settings": {},
                "durability": "recent",
                "seed": {},
            }
        ],
        "warnings": [],
        "cells": [result.cell_doc("sqlite", 4, runs)],
    }
    return result.validate(doc)
