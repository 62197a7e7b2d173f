"""The JSON bodies of the REST API, written straight from the data layer's rows with orjson.

A route that returns pydantic models has them validated again and serialized by FastAPI
(``response_model``); building the models and that second pass cost more CPU than the database
call on the hot routes. The routes keep ``response_model=`` (the OpenAPI schema and docs are
unchanged) but return these bytes, which are byte for byte what the models in
:mod:`emrops.sim.models` serialize to (tests/sim/test_wire.py checks it): the same keys in the
same order, UUIDs as hyphenated strings, datetimes in UTC as ``...T08:00:00.123456Z``
(microseconds left out when zero), non-ASCII text as UTF-8, NaN as null.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from fastapi.responses import Response

from emrops.db import queries

_OPTIONS = orjson.OPT_UTC_Z  # pydantic writes an aware UTC datetime with "Z"


class JsonBytes(Response):
    """A JSON response whose body is already serialized."""

    media_type = "application/json"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=_OPTIONS)


def scenario(row: queries.ScenarioRow) -> dict[str, Any]:
    """models.Scenario (the patient summary from the profile, an age only when an int)."""
    profile = row.patient_profile
    age = profile.get("age")
    return {
        "id": row.id,
        "slug": row.slug,
        "title": row.title,
        "description": row.description,
        "patient": {
            "name": _text(profile.get("name")),
            "age": int(age) if isinstance(age, int) else None,  # True -> 1, as pydantic does
            "sex": _text(profile.get("sex")),
            "chief_complaint": _text(profile.get("chief_complaint")),
        },
    }


def _text(value: Any) -> str | None:
    # models.PatientSummary has str | None fields: anything else in a profile was a 500 before
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"patient profile field is {type(value).__name__}, not text")


def scenario_list(rows: Sequence[queries.ScenarioRow]) -> bytes:
    """models.ScenarioList"""
    return dumps({"items": [scenario(r) for r in rows]})


def session(row: queries.SessionRow) -> bytes:
    """models.Session"""
    return dumps(
        {
            "id": row.id,
            "scenario_id": row.scenario_id,
            "status": row.status,
            "started_at": row.started_at,
            "ended_at": row.ended_at,
            "score": float(row.score) if row.score is not None else None,
            "user_email": row.user_email,
        }
    )


def _message(row: queries.MessageRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "session_id": row.session_id,
        "role": row.role,
        "content": row.content,
        "created_at": row.created_at,
    }


def exchange(value: queries.Exchange) -> bytes:
    """models.Exchange"""
    return dumps({"student": _message(value.student), "patient": _message(value.patient)})


def message_page(rows: Sequence[queries.MessageRow], next_after: int) -> bytes:
    """models.MessagePage"""
    return dumps({"items": [_message(r) for r in rows], "next_after": next_after})


def vitals_list(rows: Sequence[queries.VitalsRow]) -> bytes:
    """models.VitalsList"""
    return dumps(
        {
            "items": [
                {
                    "heart_rate": r.heart_rate,
                    "systolic_bp": r.systolic_bp,
                    "diastolic_bp": r.diastolic_bp,
                    "spo2": r.spo2,
                    "respiratory_rate": r.respiratory_rate,
                    "temperature": float(r.temperature),
                    "id": r.id,
                    "session_id": r.session_id,
                    "recorded_at": r.recorded_at,
                }
                for r in rows
            ]
        }
    )
