"""WS /ws/sessions/{id}: backlog, live messages, vitals frames, resume, refusals (in process).

The client fixture sends a vitals frame every 0.2 s, so every receive returns promptly and the
deadline checks below can never be skipped by a blocking read.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from emrops.sim.app import create_app

FRAME_DEADLINE = 10.0


def _post(client: TestClient, sid: str, content: str) -> dict[str, Any]:
    response = client.post(f"/api/sessions/{sid}/messages", json={"content": content})
    assert response.status_code == 201, response.text
    return response.json()


def _messages(ws: Any, count: int, vitals: list[dict] | None = None) -> list[dict[str, Any]]:
    """The next ``count`` message frames' data (vitals frames are collected aside)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + FRAME_DEADLINE
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} messages arrived"
        frame = ws.receive_json()
        assert set(frame) == {"type", "data"}
        if frame["type"] == "message":
            got.append(frame["data"])
        elif frame["type"] == "vitals" and vitals is not None:
            vitals.append(frame["data"])
        else:
            assert frame["type"] == "vitals", frame
    return got


def test_backlog_then_live_messages_and_vitals(client: TestClient) -> None:
    sid = client.post("/api/sessions", json={"scenario_id": 2}).json()["id"]
    first = _post(client, sid, "hello")
    with client.websocket_connect(f"/ws/sessions/{sid}?after=0") as ws:
        backlog = _messages(ws, 2)
        assert backlog == [first["student"], first["patient"]]
        second = _post(client, sid, "any allergies?")
        vitals: list[dict] = []
        live = _messages(ws, 2, vitals)
        assert live == [second["student"], second["patient"]]
        while len(vitals) < 2:
            frame = ws.receive_json()
            if frame["type"] == "vitals":
                vitals.append(frame["data"])
    sample = vitals[0]
    assert sample["session_id"] == sid and sample["recorded_at"].endswith("Z")
    assert set(sample) == {
        "session_id",
        "recorded_at",
        "heart_rate",
        "systolic_bp",
        "diastolic_bp",
        "spo2",
        "respiratory_rate",
        "temperature",
    }
    assert 85 <= sample["spo2"] <= 97  # around the asthma baseline of 91


def test_resume_after_reconnect_has_no_loss_and_no_duplicates(client: TestClient) -> None:
    sid = client.post("/api/sessions", json={"scenario_id": 1}).json()["id"]
    for i in range(3):
        _post(client, sid, f"question {i}")
    seen: list[dict[str, Any]] = []
    with client.websocket_connect(f"/ws/sessions/{sid}") as ws:
        seen += _messages(ws, 4)  # leave mid-backlog
    for i in range(3, 6):
        _post(client, sid, f"question {i}")  # posted while disconnected
    with client.websocket_connect(f"/ws/sessions/{sid}?after={seen[-1]['id']}") as ws:
        seen += _messages(ws, 8)
        _post(client, sid, "one more")
        seen += _messages(ws, 2)
    stored = client.get(f"/api/sessions/{sid}/messages", params={"limit": 500}).json()["items"]
    assert [m["id"] for m in seen] == [m["id"] for m in stored]
    assert len({m["id"] for m in seen}) == len(seen) == 14


def test_refusals_before_the_handshake(client: TestClient) -> None:
    sid = client.post("/api/sessions", json={"scenario_id": 1}).json()["id"]
    cases = [
        (f"/ws/sessions/{uuid.uuid4()}", 404, "not_found"),
        ("/ws/sessions/not-a-uuid", 404, "not_found"),
        (f"/ws/sessions/{sid}?after=-5", 422, "validation_error"),
        (f"/ws/sessions/{sid}?after=abc", 422, "validation_error"),
    ]
    for path, status, code in cases:
        with pytest.raises(WebSocketDenialResponse) as refused, client.websocket_connect(path):
            pass
        assert refused.value.status_code == status, path
        assert refused.value.json()["error"]["code"] == code


def test_token_by_query_or_header(sqlite_db: str) -> None:
    app = create_app(sqlite_db, token="ws-token-123", vitals_interval=0.2)
    auth = {"Authorization": "Bearer ws-token-123"}
    with TestClient(app) as client:
        sid = client.post("/api/sessions", json={"scenario_id": 1}, headers=auth).json()["id"]
        for path, headers in [
            (f"/ws/sessions/{sid}?token=wrong", {}),
            (f"/ws/sessions/{sid}", {"Authorization": "Bearer wrong"}),
        ]:
            with (
                pytest.raises(WebSocketDenialResponse) as refused,
                client.websocket_connect(path, headers=headers),
            ):
                pass
            assert refused.value.status_code == 401
            assert refused.value.json()["error"]["code"] == "unauthorized"
        with client.websocket_connect(f"/ws/sessions/{sid}?token=ws-token-123") as ws:
            assert ws.receive_json()["type"] == "vitals"
        with client.websocket_connect(f"/ws/sessions/{sid}", headers=auth) as ws:
            assert ws.receive_json()["type"] == "vitals"


def test_token_by_first_frame(sqlite_db: str) -> None:
    """Without a header, the first frame carries the token; a wrong or missing one closes 4401,
    and a first frame over 4 KiB is refused before it is parsed (1009)."""
    app = create_app(sqlite_db, token="ws-token-123", vitals_interval=0.2)
    auth = {"Authorization": "Bearer ws-token-123"}
    with TestClient(app) as client:
        sid = client.post("/api/sessions", json={"scenario_id": 1}, headers=auth).json()["id"]
        with client.websocket_connect(f"/ws/sessions/{sid}") as ws:
            ws.send_json({"type": "auth", "token": "ws-token-123"})
            assert ws.receive_json()["type"] == "vitals"
        for frame in ({"type": "auth", "token": "wrong"}, {"type": "hello"}):
            with client.websocket_connect(f"/ws/sessions/{sid}") as ws:
                ws.send_json(frame)
                assert ws.receive_json()["error"]["code"] == "unauthorized"
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
                assert closed.value.code == 4401
        # authenticated by frame, then refused after the handshake: error frame + 4404
        with client.websocket_connect(f"/ws/sessions/{uuid.uuid4()}") as ws:
            ws.send_json({"type": "auth", "token": "ws-token-123"})
            assert ws.receive_json()["error"]["code"] == "not_found"
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4404
        with client.websocket_connect(f"/ws/sessions/{sid}") as ws:
            ws.send_text(json.dumps({"type": "auth", "token": "x" * 5000}))
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 1009
            assert "over the limit of 4096 bytes" in closed.value.reason


def test_no_auth_frame_in_time_closes_4401(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from emrops.sim import ws as ws_module

    monkeypatch.setattr(ws_module, "AUTH_DEADLINE_S", 0.3)
    app = create_app(sqlite_db, token="ws-token-123", vitals_interval=0.2)
    auth = {"Authorization": "Bearer ws-token-123"}
    with TestClient(app) as client:
        sid = client.post("/api/sessions", json={"scenario_id": 1}, headers=auth).json()["id"]
        with client.websocket_connect(f"/ws/sessions/{sid}") as ws:
            error = ws.receive_json()  # nothing sent: the deadline passes
            assert error["error"]["code"] == "unauthorized"
            assert "in time" in error["error"]["message"]
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4401
