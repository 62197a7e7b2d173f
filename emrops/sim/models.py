"""The wire format of the simulation server (pydantic models, published at /openapi.json).

Other emrops commands (benchmark, loadtest, migrate-db checks) rely on these shapes; change them
only together with docs/sim.md.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_CONTENT = 4000
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and neither engine can store unpaired surrogates (which
    # JSON "\ud800" escapes produce): refuse them as bad input instead of failing at INSERT.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no unpaired surrogates)") from None
    return value


# Constraints first (they appear in the JSON schema), then the storability check.
Email = Annotated[
    str,
    StringConstraints(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
    AfterValidator(_storable),
]
Content = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CONTENT), AfterValidator(_storable)
]
Role = Literal["student", "patient", "system"]
Status = Literal["active", "completed", "abandoned"]


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable: not_found, validation_error, maintenance...")
    message: str


class ErrorBody(BaseModel):
    """Every error the server answers: ``{"error": {"code": ..., "message": ...}}``."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    """200 when the database answers and carries the schema; 503 (with ``error``) otherwise."""

    status: Literal["ready", "not_ready"]
    database: str = Field(description='"ok" or why it is not')
    schema_revision: str | None
    maintenance: bool
    maintenance_message: str | None = None
    error: ErrorDetail | None = None


class PatientSummary(BaseModel):
    """What a student sees of the patient before the encounter."""

    name: str | None = None
    age: int | None = None
    sex: str | None = None
    chief_complaint: str | None = None


class Scenario(BaseModel):
    id: int
    slug: str
    title: str
    description: str
    patient: PatientSummary


class ScenarioList(BaseModel):
    items: list[Scenario]


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario_id: int = Field(ge=1, le=MAX_INT32, description="id from GET /api/scenarios")
    user_email: Email | None = None


class Session(BaseModel):
    id: uuid.UUID
    scenario_id: int
    status: Status
    started_at: datetime
    ended_at: datetime | None = None
    score: float | None = None
    user_email: str | None = None


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Content


class Message(BaseModel):
    id: int = Field(description="increases within a session; use it as `after`")
    session_id: uuid.UUID
    role: Role
    content: str
    created_at: datetime


class Exchange(BaseModel):
    """The stored student message and the simulated patient's reply."""

    student: Message
    patient: Message


class MessagePage(BaseModel):
    items: list[Message]
    next_after: int = Field(
        description="pass as `after` for the next page: the last item's id, or the `after` given"
    )


class VitalsValues(BaseModel):
    heart_rate: int
    systolic_bp: int
    diastolic_bp: int
    spo2: int
    respiratory_rate: int
    temperature: float


class Vitals(VitalsValues):
    id: int
    session_id: uuid.UUID
    recorded_at: datetime


class VitalsList(BaseModel):
    items: list[Vitals]


class LiveVitals(VitalsValues):
    """A live sample sent on the WebSocket (not stored)."""

    session_id: uuid.UUID
    recorded_at: datetime
