"""Prometheus metrics of the simulation server, served as text at ``/metrics``.

Request counts and latency histograms are labelled by route *template* (``/api/sessions/{id}``),
never by the raw path, so the number of series stays bounded. DB pool gauges are refreshed by the
maintenance poller and at each scrape. With ``--workers N`` the server runs prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set by the parent), so a scrape of any worker
reports the sum over all of them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from sqlalchemy.engine import Engine

from emrops.db import queries

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "<unmatched>"
# The *_created series double the output and no dashboard of ours uses them.
disable_created_metrics()
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The server's metric objects, registered in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "emrsim_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "emrsim_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=reg,
        )
        self.exchanges = Counter(
            "emrsim_exchanges", "Student messages answered by the simulated patient.", registry=reg
        )
        self.ws_connections = Gauge(
            "emrsim_websocket_connections",
            "Open WebSocket connections.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.ws_frames = Counter(
            "emrsim_websocket_frames", "WebSocket frames sent, by type.", ["type"], registry=reg
        )
        self.maintenance = Gauge(
            "emrsim_maintenance",
            "1 while maintenance mode is on.",
            registry=reg,
            multiprocess_mode="livemax",
        )
        self.pool_size = Gauge(
            "emrsim_db_pool_size",
            "Configured size of the database connection pool.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.pool_checked_out = Gauge(
            "emrsim_db_pool_checked_out",
            "Database connections in use.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.pool_checked_in = Gauge(
            "emrsim_db_pool_checked_in",
            "Idle database connections in the pool.",
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.pool_overflow = Gauge(
            "emrsim_db_pool_overflow",
            "Connections open beyond the pool size (negative: pool not yet filled).",
            registry=reg,
            multiprocess_mode="livesum",
        )

        self.db_retries = Gauge(
            "emrsim_db_retried_operations",
            "Database operations retried on a fresh connection after a dropped one (total).",
            registry=reg,
            multiprocess_mode="sum",
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            # labels() builds and locks on every call; the label sets are few (route templates)
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def update_pool(self, engine: Engine) -> None:
        pool: Any = engine.pool
        for gauge, name in (
            (self.pool_size, "size"),
            (self.pool_checked_out, "checkedout"),
            (self.pool_checked_in, "checkedin"),
            (self.pool_overflow, "overflow"),
        ):
            reader = getattr(pool, name, None)
            if callable(reader):
                gauge.set(reader())
        self.db_retries.set(queries.retried_operations())

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Drop the live gauges of a worker that stops (multiprocess mode only)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request by its route template."""

    def __init__(self, app: Any, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def send_and_record(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            self.metrics.observe(
                scope.get("method", "GET"), route, status, time.perf_counter() - started
            )
