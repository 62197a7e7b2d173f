"""FROZEN ORACLE: emrops/db/queries.py as it was before the lean data path (issue #17).

Do not edit. tests/sim/test_datapath.py runs random operation sequences through this module and
through emrops.db.queries and asserts both leave identical databases and return the same values.

Original docstring:

EMRsim data access: the queries the simulation server, the benchmark and the tools share.

Sync SQLAlchemy Core over an engine from :func:`emrops.db.engine.create_engine`; no web framework.
Every function raises :class:`emrops.errors.DatabaseError` (with the driver error as its cause)
when the database fails, :class:`NotFound` for a missing session or scenario, and
:class:`MaintenanceOn` for a write while the maintenance flag is on.

Writes check the maintenance flag inside their own write transaction (``FOR SHARE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so once ``emrops sim maintenance on`` has returned no
write commits any more: what a migration or restore copies afterwards is final.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from emrops.db.control import MAINTENANCE_KEY
from emrops.db.engine import begin_write, db_errors
from emrops.db.schema import audit_log, emrops_control, messages, scenarios, sessions, users, vitals
from emrops.db.types import utcnow
from emrops.errors import EmropsError
from emrops.sim import patient

MAX_PAGE = 500
VITAL_COLUMNS = (
    "heart_rate",
    "systolic_bp",
    "diastolic_bp",
    "spo2",
    "respiratory_rate",
    "temperature",
)


class NotFound(EmropsError):
    """The session or scenario does not exist."""

    def __init__(self, kind: str, key: object):
        super().__init__(f"{kind} {key} not found")
        self.kind = kind
        self.key = key


class MaintenanceOn(EmropsError):
    """A write was refused because maintenance mode is on."""


@dataclass(frozen=True)
class ScenarioRow:
    id: int
    slug: str
    title: str
    description: str
    patient_profile: dict[str, Any]


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    scenario_id: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    score: float | None
    user_email: str | None


@dataclass(frozen=True)
class MessageRow:
    id: int
    session_id: uuid.UUID
    role: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class Exchange:
    """A student message and the simulated patient's reply, stored in one transaction."""

    student: MessageRow
    patient: MessageRow


@dataclass(frozen=True)
class VitalsRow:
    id: int
    session_id: uuid.UUID
    heart_rate: int
    systolic_bp: int
    diastolic_bp: int
    spo2: int
    respiratory_rate: int
    temperature: float
    recorded_at: datetime


# Called inside the write transaction of add_exchange after the inserts (PostgreSQL NOTIFY).
Announce = Callable[[Connection, uuid.UUID, int], None]
# (patient profile, student message) -> (reply text, topic)
ReplyFn = Callable[[Mapping[str, Any], str], patient.PatientReply]

_SCENARIO_COLS = (
    scenarios.c.id,
    scenarios.c.slug,
    scenarios.c.title,
    scenarios.c.description,
    scenarios.c.patient_profile,
)
_MESSAGE_COLS = (
    messages.c.id,
    messages.c.session_id,
    messages.c.role,
    messages.c.content,
    messages.c.created_at,
)
_VITALS_COLS = (vitals.c.id, vitals.c.session_id, *(vitals.c[name] for name in VITAL_COLUMNS))


def _scenario(row: Any) -> ScenarioRow:
    profile = row.patient_profile if isinstance(row.patient_profile, dict) else {}
    return ScenarioRow(row.id, row.slug, row.title, row.description or "", profile)


def _message(row: Any) -> MessageRow:
    return MessageRow(row.id, row.session_id, row.role, row.content, row.created_at)


def _vitals(row: Any) -> VitalsRow:
    return VitalsRow(
        row.id,
        row.session_id,
        row.heart_rate,
        row.systolic_bp,
        row.diastolic_bp,
        row.spo2,
        row.respiratory_rate,
        float(row.temperature),
        row.recorded_at,
    )


def check_writable(conn: Connection) -> None:
    """Raise MaintenanceOn when the flag is on; call it inside a write transaction.

    On PostgreSQL the flag row is read ``FOR SHARE``: ``set_maintenance`` waits for writes in
    flight, and writes after it see the new value.
    """
    value = conn.execute(
        sa.select(emrops_control.c.value)
        .where(emrops_control.c.key == MAINTENANCE_KEY)
        .with_for_update(read=True)
    ).scalar()
    if isinstance(value, dict) and value.get("on"):
        raise MaintenanceOn(
            str(value.get("message") or "down for maintenance"),
            hint="wait until `emrops sim maintenance off`",
        )


def list_scenarios(engine: Engine) -> list[ScenarioRow]:
    """Every scenario, by id."""
    with db_errors(engine.url), engine.connect() as conn:
        rows = conn.execute(sa.select(*_SCENARIO_COLS).order_by(scenarios.c.id)).all()
    return [_scenario(row) for row in rows]


def get_scenario(engine: Engine, scenario_id: int) -> ScenarioRow | None:
    with db_errors(engine.url), engine.connect() as conn:
        row = conn.execute(sa.select(*_SCENARIO_COLS).where(scenarios.c.id == scenario_id)).first()
    return _scenario(row) if row is not None else None


def _session_query() -> sa.Select[Any]:
    return sa.select(
        sessions.c.id,
        sessions.c.scenario_id,
        sessions.c.status,
        sessions.c.started_at,
        sessions.c.ended_at,
        sessions.c.score,
        users.c.email,
    ).select_from(sessions.outerjoin(users, users.c.id == sessions.c.user_id))


def _session(row: Any) -> SessionRow:
    return SessionRow(
        row.id, row.scenario_id, row.status, row.started_at, row.ended_at, row.score, row.email
    )


def get_session(engine: Engine, session_id: uuid.UUID) -> SessionRow | None:
    with db_errors(engine.url), engine.connect() as conn:
        row = conn.execute(_session_query().where(sessions.c.id == session_id)).first()
    return _session(row) if row is not None else None


def _user_id(conn: Connection, email: str, now: datetime) -> int:
    email = email.strip().lower()
    found = conn.execute(sa.select(users.c.id).where(users.c.email == email)).scalar()
    if found is not None:
        return int(found)
    return int(
        conn.execute(
            users.insert()
            .values(email=email, display_name=email.split("@", 1)[0], created_at=now)
            .returning(users.c.id)
        ).scalar_one()
    )


def create_session(
    engine: Engine,
    scenario_id: int,
    user_email: str | None = None,
    *,
    respect_maintenance: bool = True,
    initial_vitals: bool = True,
) -> SessionRow:
    """Start an encounter for ``scenario_id`` (and the user with ``user_email``, created when
    new). Records a triage set of vitals around the patient's baseline and an audit entry, all in
    one transaction. Raises NotFound for an unknown scenario, MaintenanceOn, DatabaseError."""
    session_id = uuid.uuid4()
    now = utcnow()
    with db_errors(engine.url), begin_write(engine) as conn:
        if respect_maintenance:
            check_writable(conn)
        profile = conn.execute(
            sa.select(scenarios.c.patient_profile).where(scenarios.c.id == scenario_id)
        ).first()
        if profile is None:
            raise NotFound("scenario", scenario_id)
        user_id = _user_id(conn, user_email, now) if user_email else None
        conn.execute(
            sessions.insert().values(
                id=session_id,
                scenario_id=scenario_id,
                user_id=user_id,
                status="active",
                started_at=now,
            )
        )
        if initial_vitals:
            sample = patient.sample_vitals(profile[0] or {}, seed=session_id.int)
            conn.execute(vitals.insert().values(session_id=session_id, recorded_at=now, **sample))
        _audit(
            conn,
            actor=user_email.strip().lower() if user_email else "anonymous",
            action="session.start",
            target=str(session_id),
            details={"scenario_id": scenario_id},
            at=now,
        )
    return SessionRow(
        session_id,
        scenario_id,
        "active",
        now,
        None,
        None,
        user_email.strip().lower() if user_email else None,
    )


def add_exchange(
    engine: Engine,
    session_id: uuid.UUID,
    content: str,
    *,
    reply: ReplyFn | None = None,
    announce: Announce | None = None,
    respect_maintenance: bool = True,
) -> Exchange:
    """Store a student message and the simulated patient's reply in ONE write transaction.

    ``reply`` defaults to :func:`emrops.sim.patient.reply`; ``announce(conn, session_id,
    last_id)`` runs inside the transaction after the inserts, so a PostgreSQL NOTIFY it issues is
    delivered only if the messages commit. Raises NotFound, MaintenanceOn, DatabaseError.
    """
    make_reply = reply or patient.reply
    with db_errors(engine.url), begin_write(engine) as conn:
        if respect_maintenance:
            check_writable(conn)
        row = conn.execute(
            sa.select(scenarios.c.patient_profile)
            .select_from(sessions.join(scenarios, scenarios.c.id == sessions.c.scenario_id))
            .where(sessions.c.id == session_id)
        ).first()
        if row is None:
            raise NotFound("session", session_id)
        answer = make_reply(row[0] if isinstance(row[0], dict) else {}, content)
        now = utcnow()
        # The reply is a moment later than the question, so ordering by time agrees with ids.
        later = now + timedelta(microseconds=1)
        rows = [
            {
                "session_id": session_id,
                "role": "student",
                "content": content,
                "created_at": now,
                "tokens": len(content.split()),
                "metadata": None,
            },
            {
                "session_id": session_id,
                "role": "patient",
                "content": answer.text,
                "created_at": later,
                "tokens": len(answer.text.split()),
                "metadata": {"topic": answer.topic, "generator": "emrops.sim.patient"},
            },
        ]
        ids = [
            conn.execute(messages.insert().values(**values).returning(messages.c.id)).scalar_one()
            for values in rows
        ]
        if announce is not None:
            announce(conn, session_id, ids[-1])
    student = MessageRow(ids[0], session_id, "student", content, now)
    return Exchange(student, MessageRow(ids[1], session_id, "patient", answer.text, later))


def list_messages(
    engine: Engine, session_id: uuid.UUID, *, after: int = 0, limit: int = 50
) -> list[MessageRow]:
    """A page of the session's messages with id > ``after``, oldest first (at most MAX_PAGE)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    with db_errors(engine.url), engine.connect() as conn:
        rows = conn.execute(
            sa.select(*_MESSAGE_COLS)
            .where(messages.c.session_id == session_id, messages.c.id > after)
            .order_by(messages.c.id)
            .limit(limit)
        ).all()
    return [_message(row) for row in rows]


def last_messages(engine: Engine, session_id: uuid.UUID, limit: int = 50) -> list[MessageRow]:
    """The session's newest ``limit`` messages, oldest first (what a chat screen shows)."""
    limit = max(1, min(int(limit), MAX_PAGE))
    with db_errors(engine.url), engine.connect() as conn:
        rows = conn.execute(
            sa.select(*_MESSAGE_COLS)
            .where(messages.c.session_id == session_id)
            .order_by(messages.c.id.desc())
            .limit(limit)
        ).all()
    return [_message(row) for row in reversed(rows)]


def add_vitals(
    engine: Engine,
    session_id: uuid.UUID,
    sample: Mapping[str, float],
    *,
    recorded_at: datetime | None = None,
    respect_maintenance: bool = True,
) -> VitalsRow:
    """Store one set of vitals (keys: VITAL_COLUMNS). Raises NotFound for an unknown session,
    MaintenanceOn, DatabaseError (also for values outside the table's CHECK ranges)."""
    values = {name: sample[name] for name in VITAL_COLUMNS}
    when = recorded_at or utcnow()
    with db_errors(engine.url), begin_write(engine) as conn:
        if respect_maintenance:
            check_writable(conn)
        if (
            conn.execute(sa.select(sessions.c.id).where(sessions.c.id == session_id)).first()
            is None
        ):
            raise NotFound("session", session_id)
        new_id = conn.execute(
            vitals.insert()
            .values(session_id=session_id, recorded_at=when, **values)
            .returning(vitals.c.id)
        ).scalar_one()
    return VitalsRow(new_id, session_id, **values, recorded_at=when)  # type: ignore[arg-type]


def list_vitals(engine: Engine, session_id: uuid.UUID, *, limit: int = 100) -> list[VitalsRow]:
    """The session's newest ``limit`` vitals readings, oldest first."""
    limit = max(1, min(int(limit), MAX_PAGE))
    with db_errors(engine.url), engine.connect() as conn:
        rows = conn.execute(
            sa.select(*_VITALS_COLS, vitals.c.recorded_at)
            .where(vitals.c.session_id == session_id)
            .order_by(vitals.c.recorded_at.desc(), vitals.c.id.desc())
            .limit(limit)
        ).all()
    return [_vitals(row) for row in reversed(rows)]


def _audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any] | None,
    at: datetime | None = None,
) -> int:
    return int(
        conn.execute(
            audit_log.insert()
            .values(
                at=at or utcnow(),
                actor=actor[:200],
                action=action[:100],
                target=target[:200] if target else None,
                details=dict(details) if details is not None else None,
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    )


def add_audit(
    engine: Engine,
    actor: str,
    action: str,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append an audit_log entry; returns its id."""
    with db_errors(engine.url), begin_write(engine) as conn:
        return _audit(conn, actor=actor, action=action, target=target, details=details)
