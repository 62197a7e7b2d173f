"""``create_app``: the EMRsim simulation server as a FastAPI application.

The database is opened and checked when the app is created (a missing schema fails here, with
the ``emrops sim init-db`` hint); the lifespan starts the event hub and the maintenance poller
and, for ``emrops sim serve``, the SIGHUP handler that re-reads the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from emrops import __version__
from emrops.db.control import Maintenance, get_maintenance
from emrops.db.engine import check_database
from emrops.db.migrations_api import current_revision, head_revision
from emrops.errors import EmropsError
from emrops.logs import get_logger
from emrops.sim import api_errors, routes, storage, ws
from emrops.sim.guard import DEFAULT_MAX_BODY, RequestGuard, bearer, token_matches
from emrops.sim.metrics import Metrics, MetricsMiddleware
from emrops.sim.models import ErrorDetail, Health, Ready
from emrops.sim.runtime import MAINTENANCE_POLL_SECONDS, Runtime, SimState, open_runtime

log = get_logger(__name__)
READY_TIMEOUT_SECONDS = 3.0
DEFAULT_VITALS_INTERVAL = 2.0


def create_app(
    db_url: str,
    token: str | None = None,
    *,
    vitals_interval: float = DEFAULT_VITALS_INTERVAL,
    retry_after: int = api_errors.DEFAULT_RETRY_AFTER,
    maintenance_poll: float = MAINTENANCE_POLL_SECONDS,
    reloader: Callable[[], str] | None = None,
    handle_sighup: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    processes: int = 1,
) -> FastAPI:
    """The simulation server for ``db_url``.

    ``token``: when set, /api and /ws need it (``Authorization: Bearer``; on the WebSocket also
    a first ``auth`` frame, or the deprecated ``?token=``). ``max_body``: the largest request body
    and WebSocket frame (413 / close 1009 above it); both are enforced by
    :class:`emrops.sim.guard.RequestGuard` before any route runs. ``reloader`` returns the
    database URL the config names now; with ``handle_sighup`` the app calls it on SIGHUP and
    switches databases when it changed. ``processes``: the workers serving the database, which
    share its connection room.
    Raises UsageError for a bad URL, DatabaseError when the database is unreachable or has no
    (current) schema."""
    if vitals_interval <= 0:
        raise ValueError("vitals_interval must be positive")
    if max_body < 1:
        raise ValueError("max_body must be at least 1 byte")
    runtime = open_runtime(db_url, processes=processes)
    metrics = Metrics()
    state = SimState(
        runtime,
        token=token,
        vitals_interval=vitals_interval,
        retry_after=retry_after,
        metrics=metrics,
        reloader=reloader,
        maintenance_poll=maintenance_poll,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await state.start()
        loop = asyncio.get_running_loop()
        pending: set[asyncio.Task[bool]] = set()

        def on_sighup() -> None:
            log.info("SIGHUP: re-reading the config")
            task = loop.create_task(state.reload())
            pending.add(task)
            task.add_done_callback(pending.discard)

        if handle_sighup:
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
        try:
            yield
        finally:
            if handle_sighup:
                loop.remove_signal_handler(signal.SIGHUP)
            await state.stop()

    app = FastAPI(
        title="EMRsim simulation server",
        version=__version__,
        description="Simulated patient encounters for EMRsim-chat (emrops). See docs/sim.md.",
        lifespan=lifespan,
    )
    app.state.sim = state
    api_errors.install(app, retry_after)
    # the last added is the outermost: metrics see (and count) what the guard refuses
    app.add_middleware(RequestGuard, token=lambda: state.token, max_body=max_body)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(routes.router)
    app.include_router(ws.router)
    _ops_routes(app, state)
    return app


def _probe(runtime: Runtime) -> tuple[str | None, Maintenance]:
    check_database(runtime.engine)
    return current_revision(runtime.engine), get_maintenance(runtime.engine)


PUBLIC_UNAVAILABLE = "the database is unavailable"


def _not_ready(
    runtime: Runtime, code: str, message: str, revision: str | None, database: str | None = None
) -> JSONResponse:
    body = Ready(
        status="not_ready",
        database=database or ("ok" if code == "schema_mismatch" else "unavailable"),
        schema_revision=revision,
        maintenance=runtime.maintenance.on,
        maintenance_message=runtime.maintenance.message or None,
        error=ErrorDetail(code=code, message=message),
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=503)


def _ops_routes(app: FastAPI, state: SimState) -> None:
    @app.get("/health", response_model=Health, tags=["ops"], summary="Liveness")
    async def health() -> Health:
        return Health()

    @app.get(
        "/ready",
        response_model=Ready,
        tags=["ops"],
        summary="Readiness: database reachable, schema revision, maintenance flag",
        responses={503: {"model": Ready, "description": "Database unreachable or wrong schema"}},
    )
    async def ready(request: Request) -> Ready | JSONResponse:
        """Status and schema revision are public; the driver's error text (host names, users,
        reasons) only goes to callers with the token."""
        runtime = state.runtime
        trusted = token_matches(state.token, bearer(request.headers.get("authorization")))
        try:
            revision, maintenance = await asyncio.wait_for(
                run_in_threadpool(_probe, runtime), READY_TIMEOUT_SECONDS
            )
        except TimeoutError:
            return _not_ready(runtime, "database_unavailable", "the database did not answer", None)
        except EmropsError as exc:
            detail = str(exc) if trusted else PUBLIC_UNAVAILABLE
            return _not_ready(runtime, "database_unavailable", detail, None)
        runtime.maintenance = maintenance
        if runtime.storage.recently_full():
            return _not_ready(
                runtime, "storage_full", storage.STORAGE_FULL_MESSAGE, revision, database="full"
            )
        if revision != head_revision():
            message = (
                "the database has no EMRsim schema: run `emrops sim init-db`"
                if revision is None
                else f"schema revision {revision}, this server needs {head_revision()}"
            )
            return _not_ready(runtime, "schema_mismatch", message, revision)
        return Ready(
            status="ready",
            database="ok",
            schema_revision=revision,
            maintenance=maintenance.on,
            maintenance_message=maintenance.message or None,
        )

    @app.get(
        "/metrics",
        tags=["ops"],
        summary="Prometheus metrics (text exposition format)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def metrics(_request: Request) -> Response:
        state.metrics.update_pool(state.runtime.engine)
        body, content_type = state.metrics.render()
        return Response(body, media_type=content_type)
