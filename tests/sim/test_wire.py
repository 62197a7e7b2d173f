"""The orjson bodies of emrops.sim.wire are byte for byte what the pydantic models (the
``response_model`` of each route, which FastAPI serialized before) give for the same rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from emrops.db import queries
from emrops.sim import models, wire

UTC_TIMES = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
# Anything a message can hold: NUL and lone surrogates are refused at input (models.Content).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


def _model_message(row: queries.MessageRow) -> models.Message:
    return models.Message(
        id=row.id,
        session_id=row.session_id,
        role=row.role,  # type: ignore[arg-type]
        content=row.content,
        created_at=row.created_at,
    )


MESSAGES = st.builds(
    queries.MessageRow,
    id=st.integers(1, models.MAX_INT64),
    session_id=st.uuids(),
    role=st.sampled_from(["student", "patient", "system"]),
    content=TEXT,
    created_at=UTC_TIMES,
)


@settings(max_examples=300)
@given(rows=st.lists(MESSAGES, max_size=5), after=st.integers(0, models.MAX_INT64))
def test_message_page_matches_the_model(rows: list[queries.MessageRow], after: int) -> None:
    next_after = rows[-1].id if rows else after
    model = models.MessagePage(items=[_model_message(r) for r in rows], next_after=next_after)
    assert wire.message_page(rows, next_after) == model.model_dump_json().encode()


@given(student=MESSAGES, patient=MESSAGES)
def test_exchange_matches_the_model(
    student: queries.MessageRow, patient: queries.MessageRow
) -> None:
    model = models.Exchange(student=_model_message(student), patient=_model_message(patient))
    assert wire.exchange(queries.Exchange(student, patient)) == model.model_dump_json().encode()


@settings(max_examples=300)
@given(
    started=UTC_TIMES,
    ended=st.none() | UTC_TIMES,
    score=st.none() | st.floats() | st.integers(-(2**53), 2**53),
    email=st.none() | TEXT,
    status=st.sampled_from(["active", "completed", "abandoned"]),
)
def test_session_matches_the_model(
    started: datetime, ended: datetime | None, score: float | None, email: str | None, status: str
) -> None:
    row = queries.SessionRow(uuid.uuid4(), 7, status, started, ended, score, email)
    model = models.Session(
        id=row.id,
        scenario_id=row.scenario_id,
        status=row.status,  # type: ignore[arg-type]
        started_at=row.started_at,
        ended_at=row.ended_at,
        score=row.score,
        user_email=row.user_email,
    )
    assert wire.session(row) == model.model_dump_json().encode()


@given(
    profile=st.fixed_dictionaries(
        {},
        optional={
            "name": st.none() | TEXT,
            "age": st.none() | st.integers(-5, 200) | st.booleans() | st.floats() | TEXT,
            "sex": st.none() | TEXT,
            "chief_complaint": st.none() | TEXT,
            "extra": st.integers(),
        },
    ),
    title=TEXT,
)
def test_scenario_list_matches_the_model(profile: dict, title: str) -> None:
    row = queries.ScenarioRow(3, "chest-pain", title, "", profile)
    age = profile.get("age")
    summary = models.PatientSummary(
        name=profile.get("name"),
        age=age if isinstance(age, int) else None,
        sex=profile.get("sex"),
        chief_complaint=profile.get("chief_complaint"),
    )
    model = models.ScenarioList(
        items=[
            models.Scenario(id=3, slug="chest-pain", title=title, description="", patient=summary)
        ]
    )
    assert wire.scenario_list([row]) == model.model_dump_json().encode()


@given(temperature=st.floats(30, 45), when=UTC_TIMES)
def test_vitals_list_matches_the_model(temperature: float, when: datetime) -> None:
    row = queries.VitalsRow(9, uuid.uuid4(), 80, 120, 80, 98, 16, temperature, when)
    model = models.VitalsList(items=[models.Vitals.model_validate(row, from_attributes=True)])
    assert wire.vitals_list([row]) == model.model_dump_json().encode()


def test_a_whole_microsecond_free_time_and_utc_offset_are_written_like_pydantic() -> None:
    when = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    row = queries.MessageRow(1, uuid.UUID(int=1), "student", "héllo\u2028😀", when)
    body = wire.message_page([row], 1)
    assert b'"created_at":"2026-12-04T08:00:00Z"' in body
    assert "héllo\u2028😀".encode() in body
    later = row.created_at + timedelta(microseconds=120)
    assert b"08:00:00.000120Z" in wire.message_page(
        [queries.MessageRow(1, row.session_id, "student", "x", later)], 1
    )


def test_api_bodies_are_what_the_response_models_serialize(client: TestClient) -> None:
    """Through the app, on both engines: every hot route's body re-serializes identically
    through its response_model (unicode, a long message, a user without e-mail)."""
    scenarios = client.get("/api/scenarios")
    assert scenarios.status_code == 200
    reparsed = models.ScenarioList.model_validate_json(scenarios.content)
    assert scenarios.content == reparsed.model_dump_json().encode()
    scenario_id = reparsed.items[0].id

    created = client.post("/api/sessions", json={"scenario_id": scenario_id})
    assert created.status_code == 201
    session = models.Session.model_validate_json(created.content)
    assert session.user_email is None and session.ended_at is None
    assert created.content == session.model_dump_json().encode()
    again = client.get(f"/api/sessions/{session.id}")
    assert (
        again.content
        == models.Session.model_validate_json(again.content).model_dump_json().encode()
    )

    for content in ('Ça fait mal ici — 痛い 😣 \u2028 "quoted" \\ \t', "x" * models.MAX_CONTENT):
        sent = client.post(f"/api/sessions/{session.id}/messages", json={"content": content})
        assert sent.status_code == 201
        exchange = models.Exchange.model_validate_json(sent.content)
        assert exchange.student.content == content
        assert sent.content == exchange.model_dump_json().encode()

    page = client.get(f"/api/sessions/{session.id}/messages", params={"after": 0, "limit": 10})
    parsed = models.MessagePage.model_validate_json(page.content)
    assert [m.role for m in parsed.items] == ["student", "patient", "student", "patient"]
    assert parsed.next_after == parsed.items[-1].id
    assert page.content == parsed.model_dump_json().encode()
    assert page.headers["content-type"] == "application/json"

    empty = client.get(f"/api/sessions/{session.id}/messages", params={"after": parsed.next_after})
    assert empty.json() == {"items": [], "next_after": parsed.next_after}

    vitals = client.get(f"/api/sessions/{session.id}/vitals")
    parsed_vitals = models.VitalsList.model_validate_json(vitals.content)
    assert len(parsed_vitals.items) == 1  # the triage set stored with the session
    assert vitals.content == parsed_vitals.model_dump_json().encode()
