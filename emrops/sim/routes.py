"""The REST API under ``/api``: scenarios, sessions, messages, vitals.

Handlers are plain ``def`` functions: FastAPI runs them in its thread pool, where the sync
SQLAlchemy queries of :mod:`emrops.db.queries` belong.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from emrops.db import queries
from emrops.sim import models, patient
from emrops.sim.api_errors import ERROR_RESPONSES, maintenance_error
from emrops.sim.runtime import Runtime, SimState


def sim_state(request: Request) -> SimState:
    state: SimState = request.app.state.sim
    return state


async def current_runtime(request: Request) -> Runtime:
    return sim_state(request).runtime


async def writable_runtime(request: Request) -> Runtime:
    """The runtime, unless maintenance mode is on (then 503 + Retry-After)."""
    state = sim_state(request)
    runtime = state.runtime
    if runtime.maintenance.on:
        raise maintenance_error(runtime.maintenance.message, state.retry_after)
    return runtime


ReadDb = Annotated[Runtime, Depends(current_runtime)]
WriteDb = Annotated[Runtime, Depends(writable_runtime)]
# The token is checked by emrops.sim.guard.RequestGuard before the request reaches a route.
router = APIRouter(prefix="/api", responses=ERROR_RESPONSES)


def _scenario(row: queries.ScenarioRow) -> models.Scenario:
    profile = row.patient_profile
    age = profile.get("age")
    return models.Scenario(
        id=row.id,
        slug=row.slug,
        title=row.title,
        description=row.description,
        patient=models.PatientSummary(
            name=profile.get("name"),
            age=age if isinstance(age, int) else None,
            sex=profile.get("sex"),
            chief_complaint=profile.get("chief_complaint"),
        ),
    )


def _session(row: queries.SessionRow) -> models.Session:
    return models.Session(
        id=row.id,
        scenario_id=row.scenario_id,
        status=row.status,  # type: ignore[arg-type]
        started_at=row.started_at,
        ended_at=row.ended_at,
        score=row.score,
        user_email=row.user_email,
    )


def _message(row: queries.MessageRow) -> models.Message:
    return models.Message(
        id=row.id,
        session_id=row.session_id,
        role=row.role,  # type: ignore[arg-type]
        content=row.content,
        created_at=row.created_at,
    )


def _existing_session(runtime: Runtime, session_id: uuid.UUID) -> queries.SessionRow:
    found = queries.get_session(runtime.engine, session_id)
    if found is None:
        raise queries.NotFound("session", session_id)
    return found


@router.get("/scenarios", response_model=models.ScenarioList, summary="List scenarios")
def list_scenarios(runtime: ReadDb) -> models.ScenarioList:
    return models.ScenarioList(items=[_scenario(r) for r in queries.list_scenarios(runtime.engine)])


@router.post(
    "/sessions", status_code=201, response_model=models.Session, summary="Start an encounter"
)
def create_session(body: models.SessionCreate, runtime: WriteDb) -> models.Session:
    row = queries.create_session(
        runtime.engine, body.scenario_id, body.user_email, initial_vitals=patient.sample_vitals
    )
    return _session(row)


@router.get("/sessions/{session_id}", response_model=models.Session, summary="Get a session")
def get_session(session_id: uuid.UUID, runtime: ReadDb) -> models.Session:
    return _session(_existing_session(runtime, session_id))


@router.post(
    "/sessions/{session_id}/messages",
    status_code=201,
    response_model=models.Exchange,
    summary="Send a student message; the simulated patient replies",
)
def post_message(
    session_id: uuid.UUID, body: models.MessageCreate, runtime: WriteDb, request: Request
) -> models.Exchange:
    hub = runtime.hub
    exchange = queries.add_exchange(
        runtime.engine,
        session_id,
        body.content,
        reply=patient.reply,
        announce=hub.announce_in_tx,
    )
    # Wake this process's streams at once (other instances hear the NOTIFY).
    hub.announce(session_id)
    sim_state(request).metrics.exchanges.inc()
    return models.Exchange(student=_message(exchange.student), patient=_message(exchange.patient))


@router.get(
    "/sessions/{session_id}/messages",
    response_model=models.MessagePage,
    summary="A page of the session's messages after a message id",
)
def list_messages(
    session_id: uuid.UUID,
    runtime: ReadDb,
    after: Annotated[int, Query(ge=0, le=models.MAX_INT64, description="message id")] = 0,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
) -> models.MessagePage:
    rows = queries.list_messages(runtime.engine, session_id, after=after, limit=limit)
    if not rows:
        _existing_session(runtime, session_id)  # an empty page, or no such session?
    return models.MessagePage(
        items=[_message(r) for r in rows], next_after=rows[-1].id if rows else after
    )


@router.get(
    "/sessions/{session_id}/vitals",
    response_model=models.VitalsList,
    summary="Stored vital signs of the session, oldest first",
)
def list_vitals(
    session_id: uuid.UUID,
    runtime: ReadDb,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 100,
) -> models.VitalsList:
    rows = queries.list_vitals(runtime.engine, session_id, limit=limit)
    if not rows:
        _existing_session(runtime, session_id)
    return models.VitalsList(
        items=[models.Vitals.model_validate(row, from_attributes=True) for row in rows]
    )
