"""Every REST endpoint of the simulation server, in process, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from emrops.db.control import set_maintenance
from emrops.db.engine import create_engine
from emrops.db.migrations_api import head_revision
from emrops.errors import DatabaseError
from emrops.sim.app import create_app
from emrops.sim.catalog import CATALOG
from tests.conftest import drop_pg_database


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


def _session(client: TestClient, scenario_id: int = 1, **extra: object) -> dict:
    response = client.post("/api/sessions", json={"scenario_id": scenario_id, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def test_health_ready_and_scenarios(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["database"] == "ok"
    assert ready.json()["schema_revision"] == head_revision()
    assert ready.json()["maintenance"] is False
    items = client.get("/api/scenarios").json()["items"]
    assert [s["slug"] for s in items] == [c["slug"] for c in CATALOG]
    assert items[0]["patient"] == {
        "name": "Robert Miller",
        "age": 58,
        "sex": "male",
        "chief_complaint": "crushing pain in the middle of my chest",
    }
    assert "vitals_baseline" not in str(items)  # the hidden parts of the profile stay hidden


def test_session_conversation_history_and_vitals(client: TestClient) -> None:
    created = _session(client, 1, user_email="Ana@Example.org")
    assert set(created) >= {"id", "scenario_id", "status", "started_at"}
    assert created["scenario_id"] == 1 and created["status"] == "active"
    assert created["user_email"] == "ana@example.org"
    assert created["started_at"].endswith("Z")
    sid = created["id"]
    assert client.get(f"/api/sessions/{sid}").json() == created

    posted = client.post(f"/api/sessions/{sid}/messages", json={"content": "Where is the pain?"})
    assert posted.status_code == 201
    exchange = posted.json()
    student, patient = exchange["student"], exchange["patient"]
    assert set(student) == {"id", "session_id", "role", "content", "created_at"}
    assert (student["role"], student["content"], student["session_id"]) == (
        "student",
        "Where is the pain?",
        sid,
    )
    assert patient["role"] == "patient" and "left arm and jaw" in patient["content"]
    assert patient["id"] > student["id"]
    again = client.post(f"/api/sessions/{sid}/messages", json={"content": "Where is the pain?"})
    assert again.json()["patient"]["content"] == patient["content"]  # deterministic
    assert again.json()["student"]["id"] > patient["id"]

    page = client.get(f"/api/sessions/{sid}/messages", params={"after": 0, "limit": 3}).json()
    assert [m["id"] for m in page["items"]] == [
        student["id"],
        patient["id"],
        again.json()["student"]["id"],
    ]
    assert page["next_after"] == page["items"][-1]["id"]
    rest = client.get(f"/api/sessions/{sid}/messages", params={"after": page["next_after"]})
    assert [m["id"] for m in rest.json()["items"]] == [again.json()["patient"]["id"]]
    empty = client.get(f"/api/sessions/{sid}/messages", params={"after": 10**9}).json()
    assert empty == {"items": [], "next_after": 10**9}

    readings = client.get(f"/api/sessions/{sid}/vitals").json()["items"]
    assert len(readings) == 1 and readings[0]["session_id"] == sid
    assert 80 <= readings[0]["heart_rate"] <= 130  # around the chest-pain baseline of 104


def test_bad_input_gets_4xx_json(client: TestClient) -> None:
    sid = _session(client)["id"]
    url = f"/api/sessions/{sid}/messages"
    json_header = {"content-type": "application/json"}
    assert "not valid JSON" in _error(
        client.post(url, content=b'{"content": ', headers=json_header), 400, "malformed_json"
    )
    _error(client.post(url, content=b"content=hi"), 400, "malformed_json")
    too_long = client.post(url, json={"content": "x" * 4001})
    assert "at most 4000 characters" in _error(too_long, 422, "validation_error")
    assert client.post(url, json={"content": "x" * 4000}).status_code == 201
    _error(client.post(url, json={"content": ""}), 422, "validation_error")
    _error(client.post(url, json={"content": "nul \x00 byte"}), 422, "validation_error")
    surrogate = client.post(url, content=b'{"content": "\\ud800"}', headers=json_header)
    _error(surrogate, 422, "validation_error")
    _error(client.post(url, json={"content": "hi", "extra": 1}), 422, "validation_error")
    _error(client.post(url, json=["content"]), 422, "validation_error")
    _error(
        client.post(f"/api/sessions/{uuid.uuid4()}/messages", json={"content": "hi"}),
        404,
        "not_found",
    )
    _error(
        client.post("/api/sessions/not-a-uuid/messages", json={"content": "hi"}), 404, "not_found"
    )
    _error(client.get(f"/api/sessions/{uuid.uuid4()}"), 404, "not_found")
    _error(client.get("/api/sessions/123"), 404, "not_found")
    _error(client.get(f"/api/sessions/{uuid.uuid4()}/messages"), 404, "not_found")
    _error(client.get(f"/api/sessions/{uuid.uuid4()}/vitals"), 404, "not_found")
    _error(client.get(f"/api/sessions/{sid}/messages?after=-1"), 422, "validation_error")
    _error(client.get(f"/api/sessions/{sid}/messages?limit=0"), 422, "validation_error")
    _error(client.get(f"/api/sessions/{sid}/messages?after=abc"), 422, "validation_error")
    _error(client.post("/api/sessions", json={"scenario_id": 999}), 404, "not_found")
    _error(client.post("/api/sessions", json={"scenario_id": 2**40}), 422, "validation_error")
    _error(
        client.post("/api/sessions", json={"scenario_id": 1, "user_email": "nope"}),
        422,
        "validation_error",
    )
    _error(client.post("/api/sessions", json={}), 422, "validation_error")
    _error(client.get("/api/nothing-here"), 404, "not_found")
    _error(client.delete("/api/scenarios"), 405, "method_not_allowed")


def test_maintenance_blocks_writes_with_retry_after_and_keeps_reads(
    client: TestClient, sim_db: str
) -> None:
    sid = _session(client)["id"]
    engine = create_engine(sim_db)
    try:
        set_maintenance(engine, True, "restoring last night's backup")
        # Refused at once (checked inside the write transaction), before the poller even ran.
        refused = client.post(f"/api/sessions/{sid}/messages", json={"content": "hello"})
        assert "restoring last night's backup" in _error(refused, 503, "maintenance")
        assert int(refused.headers["retry-after"]) > 0
        _error(client.post("/api/sessions", json={"scenario_id": 1}), 503, "maintenance")
        assert client.get(f"/api/sessions/{sid}").status_code == 200
        assert client.get(f"/api/sessions/{sid}/messages").json()["items"] == []
        ready = client.get("/ready").json()
        assert ready["maintenance"] is True
        assert ready["maintenance_message"] == "restoring last night's backup"
        set_maintenance(engine, False)
        assert client.get("/ready").json()["maintenance"] is False
        ok = client.post(f"/api/sessions/{sid}/messages", json={"content": "hello"})
        assert ok.status_code == 201
    finally:
        engine.dispose()


def test_token_required_for_api_not_for_health_or_metrics(sim_db: str) -> None:
    with TestClient(create_app(sim_db, token="s3cret-token")) as client:
        _error(client.get("/api/scenarios"), 401, "unauthorized")
        wrong = client.get("/api/scenarios", headers={"Authorization": "Bearer nope"})
        assert "wrong" in _error(wrong, 401, "unauthorized")
        assert wrong.headers["www-authenticate"] == "Bearer"
        _error(
            client.post(
                "/api/sessions", json={"scenario_id": 1}, headers={"Authorization": "Basic x"}
            ),
            401,
            "unauthorized",
        )
        good = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/scenarios", headers=good).status_code == 200
        assert (
            client.post("/api/sessions", json={"scenario_id": 1}, headers=good).status_code == 201
        )
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 200
        assert client.get("/ready").status_code == 200


def test_metrics_count_requests_by_route_template(client: TestClient) -> None:
    sid = _session(client)["id"]
    client.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
    client.get(f"/api/sessions/{sid}/messages")
    client.get(f"/api/sessions/{uuid.uuid4()}")
    text = client.get("/metrics").text
    assert (
        'emrsim_http_requests_total{method="POST",route="/api/sessions/{session_id}/messages",'
        'status="201"} 1.0' in text
    )
    assert 'route="/api/sessions/{session_id}",status="404"} 1.0' in text
    assert sid not in text  # raw paths never become labels
    assert 'emrsim_http_request_duration_seconds_bucket{le="0.005",method="GET"' in text
    assert "emrsim_exchanges_total 1.0" in text
    assert "emrsim_db_pool_size" in text and "emrsim_db_pool_checked_out" in text
    assert "emrsim_maintenance 0.0" in text


def test_openapi_describes_the_wire_format(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {
        "/health",
        "/ready",
        "/metrics",
        "/api/scenarios",
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/messages",
        "/api/sessions/{session_id}/vitals",
    } <= set(spec["paths"])
    content = spec["components"]["schemas"]["MessageCreate"]["properties"]["content"]
    assert (content["minLength"], content["maxLength"]) == (1, 4000)
    post = spec["paths"]["/api/sessions/{session_id}/messages"]["post"]
    assert {"201", "400", "401", "404", "422", "503"} <= set(post["responses"])
    error_ref = post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorBody")


def test_app_refuses_a_database_without_schema(tmp_path, pg_url: str) -> None:
    with pytest.raises(DatabaseError, match="database file not found") as missing:
        create_app(f"sqlite:///{tmp_path / 'nothing.db'}")
    assert "emrops sim init-db" in str(missing.value.hint)
    assert not (tmp_path / "nothing.db").exists()
    with pytest.raises(DatabaseError, match="has no EMRsim schema") as empty:
        create_app(pg_url)
    assert "emrops sim init-db" in str(empty.value.hint)


def test_unreachable_database_is_503_not_500(pg_db: str) -> None:
    """/ready says 503 (liveness stays 200) and API calls get 503 + Retry-After, never a 500."""
    name = pg_db.rsplit("/", 1)[1]
    with TestClient(create_app(pg_db, maintenance_poll=0.1)) as client:
        sid = _session(client)["id"]
        drop_pg_database(name)  # WITH (FORCE): pooled and LISTEN connections are cut too
        ready = client.get("/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not_ready" and body["database"] == "unavailable"
        assert body["error"]["code"] == "database_unavailable"
        assert client.get("/health").status_code == 200
        read = client.get(f"/api/sessions/{sid}")
        _error(read, 503, "database_unavailable")
        assert int(read.headers["retry-after"]) > 0
        write = client.post(f"/api/sessions/{sid}/messages", json={"content": "hello"})
        _error(write, 503, "database_unavailable")
