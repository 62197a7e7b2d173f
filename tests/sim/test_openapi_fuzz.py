"""schemathesis against /openapi.json: no 5xx and no response outside the published schema.

Runs on a real SQLite database initialised like `emrops sim init-db`. Half of the generated
session ids are swapped for a real session, so the success paths get fuzzed too, not only 404s.
"""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from emrops.sim.app import create_app

# FastAPI publishes OpenAPI 3.1; schemathesis 3.x supports it behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()
REAL_SESSION: dict[str, str] = {}


@pytest.fixture
def api_schema(sqlite_db: str):
    app = create_app(sqlite_db, vitals_interval=5.0)
    with TestClient(app) as client:
        created = client.post("/api/sessions", json={"scenario_id": 1})
        assert created.status_code == 201
        REAL_SESSION["id"] = created.json()["id"]
    return schemathesis.from_asgi("/openapi.json", app)


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors_and_responses_match_the_schema(case) -> None:
    params = case.path_parameters or {}
    if "session_id" in params and str(params["session_id"])[-1] in "02468ace":
        params["session_id"] = REAL_SESSION["id"]
    response = case.call_and_validate()
    assert response.status_code < 500
