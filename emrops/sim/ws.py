"""``WS /ws/sessions/{id}?after=ID``: a session's messages and live vitals as they happen.

The stream first sends every stored message with id > ``after`` (the backlog), then new ones as
they are announced, always read from the database after the stream's own cursor: ids only grow,
nothing is sent twice, and a client that reconnects with ``after=<last id it saw>`` misses
nothing. Every ``vitals_interval`` seconds a live vitals sample is sent (not stored).

Authentication (when the server has a token): an ``Authorization: Bearer`` header, checked
before the handshake by :class:`emrops.sim.guard.RequestGuard`, or (browsers cannot set headers)
a first frame ``{"type": "auth", "token": "..."}`` within AUTH_DEADLINE_S, at most 4 KiB. The
``?token=`` query parameter still works but is deprecated (URLs end up in logs).

Frames: ``{"type": "message" | "vitals" | "error", "data": {...}}``. Refusals happen before the
handshake completes, as an HTTP response with the usual error body (401, 404, 422); servers
without that ASGI extension, and connections that authenticate by frame (already accepted),
get an ``error`` frame and a close with 4401/4404/4422/4503 instead. When the server switches
databases (SIGHUP) or stops, streams get an ``error`` frame with code ``reconnect`` and close
with 1012.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from emrops.db import queries
from emrops.db.types import utcnow
from emrops.errors import EmropsError
from emrops.logs import get_logger
from emrops.sim import models
from emrops.sim.api_errors import error_body, error_response
from emrops.sim.guard import AUTH_DEADLINE_S, AUTH_SCOPE_KEY, token_matches
from emrops.sim.patient import VitalsStream
from emrops.sim.runtime import Runtime, SimState

log = get_logger(__name__)
router = APIRouter()
PAGE = 200
DB_RETRY_CLOSE = 1013  # "try again later"


async def _refuse(websocket: WebSocket, status: int, code: str, message: str) -> None:
    if websocket.application_state == WebSocketState.CONNECTED:  # accepted: frame, then close
        with contextlib.suppress(Exception):
            await websocket.send_json(error_body(code, message))
            await websocket.close(code=4000 + status, reason=message[:120])
    elif "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(status, code, message))
    else:  # pragma: no cover - uvicorn and the test client both support denial responses
        await websocket.close(code=4000 + status, reason=message[:120])


class _Stream:
    def __init__(
        self,
        websocket: WebSocket,
        state: SimState,
        runtime: Runtime,
        session_id: uuid.UUID,
        after: int,
        profile: dict[str, Any],
    ):
        self.ws = websocket
        self.state = state
        self.runtime = runtime
        self.session_id = session_id
        self.cursor = after
        self.vitals = VitalsStream(profile, seed=f"{session_id}:{time.time_ns()}")
        self.closed = False

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        await self.ws.send_json({"type": kind, "data": data})
        self.state.metrics.ws_frames.labels(kind).inc()

    async def send_new_messages(self) -> None:
        while True:
            rows = await self.runtime.calls.read(
                queries.list_messages,
                self.runtime.engine,
                self.session_id,
                after=self.cursor,
                limit=PAGE,
            )
            for row in rows:
                if row.id <= self.cursor:  # never twice, whatever the database returns
                    continue
                message = models.Message(
                    id=row.id,
                    session_id=row.session_id,
                    role=row.role,  # type: ignore[arg-type]
                    content=row.content,
                    created_at=row.created_at,
                )
                await self.send("message", message.model_dump(mode="json"))
                self.cursor = row.id
            if len(rows) < PAGE:
                return

    async def send_vitals(self) -> None:
        sample = models.LiveVitals(
            session_id=self.session_id,
            recorded_at=utcnow(),
            **self.vitals.next(),  # type: ignore[arg-type]
        )
        await self.send("vitals", sample.model_dump(mode="json"))

    async def drain(self, wake: Any) -> None:
        """Read (and ignore) client frames until the client goes away, then wake the loop."""
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except Exception:  # any receive failure means the connection is gone
            return
        finally:
            self.closed = True
            wake()

    async def run(self) -> None:
        sub = self.runtime.hub.subscribe(self.session_id)
        reader = asyncio.create_task(self.drain(sub.wake))
        loop = asyncio.get_running_loop()
        interval = self.state.vitals_interval
        try:
            await self.send_new_messages()
            await self.send_vitals()
            next_tick = loop.time() + interval
            while not self.closed:
                woke = await sub.wait(max(0.0, next_tick - loop.time()))
                if self.closed:
                    return
                if sub.close_request is not None:
                    code, reason = sub.close_request
                    await self.send("error", error_body("reconnect", reason)["error"])
                    await self.ws.close(code=code, reason=reason[:120])
                    return
                # Without a live LISTEN connection, poll on each tick so nothing is missed.
                if woke or not self.runtime.hub.live:
                    await self.send_new_messages()
                if loop.time() >= next_tick:
                    await self.send_vitals()
                    next_tick = max(next_tick + interval, loop.time())
        except EmropsError as exc:
            log.warning("stream of session %s stopped: %s", self.session_id, exc)
            with contextlib.suppress(Exception):
                await self.send(
                    "error",
                    error_body("database_unavailable", "the database is unavailable; reconnect")[
                        "error"
                    ],
                )
                await self.ws.close(code=DB_RETRY_CLOSE)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the client went away while we were sending
        finally:
            sub.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


async def _authenticate_by_frame(websocket: WebSocket, token: str | None) -> bool:
    """Accept, then expect ``{"type": "auth", "token": ...}`` as the first frame within the
    deadline (the guard caps it at 4 KiB). False (after closing with 4401) otherwise."""
    await websocket.accept()
    try:
        message = await asyncio.wait_for(websocket.receive(), AUTH_DEADLINE_S)
    except TimeoutError:
        await _refuse(websocket, 401, "unauthorized", "no auth frame in time")
        return False
    if message["type"] != "websocket.receive":
        return False  # gone (or closed by the guard for a frame over 4 KiB)
    try:
        frame = json.loads(message.get("text") or message.get("bytes") or b"")
    except ValueError:
        frame = None
    given = frame.get("token") if isinstance(frame, dict) and frame.get("type") == "auth" else None
    if not isinstance(given, str) or not token_matches(token, given):
        await _refuse(websocket, 401, "unauthorized", "missing or wrong token")
        return False
    websocket.scope["state"][AUTH_SCOPE_KEY] = "ok"  # full frame limit from now on
    return True


@router.websocket("/ws/sessions/{session_id}")
async def session_stream(websocket: WebSocket, session_id: str) -> None:
    state: SimState = websocket.app.state.sim
    runtime = state.runtime
    params = websocket.query_params
    # a header or ?token= was checked by the guard; "pending": the token comes as a frame
    pending = websocket.scope.get("state", {}).get(AUTH_SCOPE_KEY) == "pending"
    if pending and not await _authenticate_by_frame(websocket, state.token):
        return
    try:
        sid = uuid.UUID(session_id)
    except ValueError:
        await _refuse(websocket, 404, "not_found", "session not found")
        return
    raw_after = params.get("after", "0")
    try:
        after = int(raw_after)
        if not 0 <= after <= models.MAX_INT64:
            raise ValueError
    except ValueError:
        await _refuse(websocket, 422, "validation_error", "after: must be a message id (>= 0)")
        return
    try:
        found = await runtime.calls.read(queries.get_session, runtime.engine, sid)
        scenario = (
            await runtime.calls.read(queries.get_scenario, runtime.engine, found.scenario_id)
            if found is not None
            else None
        )
    except EmropsError:
        await _refuse(websocket, 503, "database_unavailable", "the database is unavailable")
        return
    if found is None:
        await _refuse(websocket, 404, "not_found", "session not found")
        return
    if websocket.application_state != WebSocketState.CONNECTED:
        await websocket.accept()
    state.metrics.ws_connections.inc()
    try:
        profile = scenario.patient_profile if scenario is not None else {}
        await _Stream(websocket, state, runtime, sid, after, profile).run()
    finally:
        state.metrics.ws_connections.dec()
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()
