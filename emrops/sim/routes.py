"""The REST API under ``/api``: scenarios, sessions, messages, vitals.

Handlers are ``async``: their database calls run where :mod:`emrops.sim.dbcalls` decides per
engine (SQLite reads inline, SQLite writes on one writer thread, PostgreSQL on threads), and
they answer with bodies :mod:`emrops.sim.wire` writes straight from the rows. ``response_model``
stays on every route: it documents the body in the OpenAPI schema, which the bytes match.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from emrops.db import queries
from emrops.sim import models, patient, wire
from emrops.sim.api_errors import ERROR_RESPONSES, maintenance_error
from emrops.sim.runtime import Runtime, SimState
from emrops.sim.wire import JsonBytes


def sim_state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


def current_runtime(request: Request) -> Runtime:
    # A plain call, not a dependency: read routes skip FastAPI's dependency solving for it.
    return sim_state(request).runtime


async def writable_runtime(request: Request) -> Runtime:
    """The runtime, unless maintenance mode is on (then 503 + Retry-After)."""
    state = sim_state(request)
    runtime = state.runtime
    if runtime.maintenance.on:
        raise maintenance_error(runtime.maintenance.message, state.retry_after)
    return runtime


WriteDb = Annotated[Runtime, Depends(writable_runtime)]
# The token is checked by emrops.sim.guard.RequestGuard before the request reaches a route.
router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


async def _existing_session(runtime: Runtime, session_id: uuid.UUID) -> queries.SessionRow:
    found = await runtime.calls.read(queries.get_session, runtime.engine, session_id)
    if found is None:
        raise queries.NotFound("session", session_id)
    return found


@router.get("/scenarios", response_model=models.ScenarioList, summary="List scenarios")
async def list_scenarios(request: Request) -> Response:
    runtime = current_runtime(request)
    return JsonBytes(await runtime.scenarios.body(runtime.engine, runtime.calls))


@router.post(
    "/sessions", status_code=201, response_model=models.Session, summary="Start an encounter"
)
async def create_session(body: models.SessionCreate, runtime: WriteDb) -> Response:
    row = await runtime.calls.write(
        queries.create_session,
        runtime.engine,
        body.scenario_id,
        body.user_email,
        initial_vitals=patient.sample_vitals,
    )
    return JsonBytes(wire.session(row), status_code=201)


@router.get("/sessions/{session_id}", response_model=models.Session, summary="Get a session")
async def get_session(session_id: uuid.UUID, request: Request) -> Response:
    runtime = current_runtime(request)
    return JsonBytes(wire.session(await _existing_session(runtime, session_id)))


@router.post(
    "/sessions/{session_id}/messages",
    status_code=201,
    response_model=models.Exchange,
    summary="Send a student message; the simulated patient replies",
)
async def post_message(
    session_id: uuid.UUID, body: models.MessageCreate, runtime: WriteDb, request: Request
) -> Response:
    hub = runtime.hub
    exchange = await runtime.calls.write(
        queries.add_exchange,
        runtime.engine,
        session_id,
        body.content,
        reply=patient.reply,
    )
    # Committed: wake this process's streams, and tell the other instances (PostgreSQL).
    hub.published(session_id, exchange.patient.id)
    sim_state(request).metrics.exchanges.inc()
    return JsonBytes(wire.exchange(exchange), status_code=201)


@router.get(
    "/sessions/{session_id}/messages",
    response_model=models.MessagePage,
    summary="A page of the session's messages after a message id",
)
async def list_messages(
    session_id: uuid.UUID,
    request: Request,
    after: Annotated[int, Query(ge=0, le=models.MAX_INT64, description="message id")] = 0,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
) -> Response:
    runtime = current_runtime(request)
    rows = await runtime.calls.read(
        queries.list_messages, runtime.engine, session_id, after=after, limit=limit
    )
    if not rows:
        await _existing_session(runtime, session_id)  # an empty page, or no such session?
    return JsonBytes(wire.message_page(rows, rows[-1].id if rows else after))


@router.get(
    "/sessions/{session_id}/vitals",
    response_model=models.VitalsList,
    summary="Stored vital signs of the session, oldest first",
)
async def list_vitals(
    session_id: uuid.UUID,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 100,
) -> Response:
    runtime = current_runtime(request)
    rows = await runtime.calls.read(queries.list_vitals, runtime.engine, session_id, limit=limit)
    if not rows:
        await _existing_session(runtime, session_id)
    return JsonBytes(wire.vitals_list(rows))
