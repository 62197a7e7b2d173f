"""The SQL texts of the data layer (:mod:`emrops.db.queries`), one set per dialect, built once at
import, and the codec that turns Python values into what each driver stores, the way the
schema's SQLAlchemy types (sa.Uuid, UTCDateTime, sa.JSON) store them, so rows written by the
lean path and rows written through SQLAlchemy are identical.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# ---------------------------------------------------------------------------------------------
# SQL texts, one set per dialect, built once. Written with ``?``; PostgreSQL gets ``%s``.

_MSG = "id, role, content, created_at"
_VIT = "id, heart_rate, systolic_bp, diastolic_bp, spo2, respiratory_rate, temperature, recorded_at"
_INS_VIT = (
    "INSERT INTO vitals (session_id, heart_rate, systolic_bp, diastolic_bp, spo2, "
    "respiratory_rate, temperature, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"
)


# Readers page a session's messages by id ("after the last id I saw": WebSocket streams, history
# pages), which is only safe when no message of the session can commit with a LOWER id than one
# already visible. Identity values are handed out at INSERT, not at COMMIT, so two concurrent
# exchanges on one session could commit out of id order and a reader that saw the later one
# would skip the earlier one for ever. Every write that adds messages to a session therefore
# locks the session's row first (FOR NO KEY UPDATE: the messages' foreign-key checks, FOR KEY
# SHARE, do not conflict with it): writes to one session are serialised, writes to different
# sessions are not.
SESSION_LOCK = " FOR NO KEY UPDATE"


@dataclass(frozen=True)
class Sql:
    scenarios: str
    scenario: str
    profiles: str
    session: str
    gate_session: str  # maintenance flag + the session's scenario id, in one statement
    gate_create: str  # maintenance flag + the user's id, in one statement
    insert_exchange: str
    insert_message: str
    insert_vitals: str
    insert_session: str
    insert_user: str
    insert_audit: str
    last_messages: str
    list_messages: str
    message: str
    list_vitals: str
    vitals_range: str
    jsonb: str  # the placeholder of a JSON value


def _build(pg: bool) -> Sql:
    lock = " FOR SHARE" if pg else ""
    session_lock = SESSION_LOCK if pg else ""
    j = "?::jsonb" if pg else "?"
    flag = f"(SELECT value FROM emrops_control WHERE key = ?{lock})"
    texts = Sql(
        scenarios="SELECT id, slug, title, description, patient_profile FROM scenarios ORDER BY id",
        scenario="SELECT id, slug, title, description, patient_profile FROM scenarios WHERE id = ?",
        profiles="SELECT id, patient_profile FROM scenarios",
        session=(
            "SELECT s.id, s.scenario_id, s.status, s.started_at, s.ended_at, s.score, u.email "
            "FROM sessions AS s LEFT OUTER JOIN users AS u ON u.id = s.user_id WHERE s.id = ?"
        ),
        gate_session=(
            f"SELECT {flag}, (SELECT scenario_id FROM sessions WHERE id = ?{session_lock})"
        ),
        gate_create=f"SELECT {flag}, (SELECT id FROM users WHERE email = ?)",
        insert_exchange=(
            "INSERT INTO messages (session_id, role, content, created_at, tokens, metadata) "
            f"VALUES (?, 'student', ?, ?, ?, {j}), (?, 'patient', ?, ?, ?, {j}) RETURNING id, role"
        ),
        insert_message=(
            "INSERT INTO messages (session_id, role, content, created_at, tokens, metadata) "
            f"VALUES (?, ?, ?, ?, ?, {j}) RETURNING id"
        ),
        insert_vitals=_INS_VIT,
        insert_session=(
            "INSERT INTO sessions (id, scenario_id, user_id, status, started_at) "
            "VALUES (?, ?, ?, 'active', ?)"
        ),
        insert_user=(
            "INSERT INTO users (email, display_name, created_at) VALUES (?, ?, ?) RETURNING id"
        ),
        insert_audit=(
            f"INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, {j})"
        ),
        last_messages=f"SELECT {_MSG} FROM messages WHERE session_id = ? ORDER BY id DESC LIMIT ?",
        list_messages=(
            f"SELECT {_MSG} FROM messages WHERE session_id = ? AND id > ? ORDER BY id LIMIT ?"
        ),
        message="SELECT id, session_id, role, content, created_at FROM messages WHERE id = ?",
        list_vitals=(
            f"SELECT {_VIT} FROM vitals WHERE session_id = ? "
            "ORDER BY recorded_at DESC, id DESC LIMIT ?"
        ),
        vitals_range=(
            f"SELECT {_VIT} FROM vitals WHERE session_id = ? AND recorded_at >= ? "
            "AND recorded_at < ? ORDER BY recorded_at"
        ),
        jsonb=j,
    )
    if not pg:
        return texts
    fields = {name: getattr(texts, name).replace("?", "%s") for name in texts.__dataclass_fields__}
    return Sql(**fields)


SQLITE = _build(pg=False)
PG = _build(pg=True)

# PostgreSQL's exchange in ONE autocommitted statement (one round trip, its own transaction):
# the maintenance flag read FOR SHARE, the session's scenario, and both inserts, which happen
# only when the flag is off and the session belongs to the scenario whose profile made the reply
# (the caller's expectation; NULL inserts nothing). Returns the flag, the session's scenario and
# the two new ids (NULL when nothing was inserted). "On" is Python's truthiness of the flag's
# "on" value, as _refuse_if_maintenance reads it.
_FLAG_ON = (
    "CASE jsonb_typeof(g.flag -> 'on') "
    "WHEN 'boolean' THEN (g.flag ->> 'on') = 'true' "
    "WHEN 'number' THEN (g.flag ->> 'on')::numeric <> 0 "
    "WHEN 'string' THEN (g.flag ->> 'on') <> '' "
    "WHEN 'array' THEN jsonb_array_length(g.flag -> 'on') > 0 "
    "WHEN 'object' THEN (g.flag -> 'on') <> '{}'::jsonb "
    "ELSE false END"
)
PG_EXCHANGE = (
    "WITH g AS (SELECT (SELECT value FROM emrops_control WHERE key = %s FOR SHARE) AS flag, "
    f"(SELECT scenario_id FROM sessions WHERE id = %s{SESSION_LOCK}) AS sc), "
    "ins AS (INSERT INTO messages (session_id, role, content, created_at, tokens, metadata) "
    "SELECT * FROM (VALUES "
    "(%s::uuid, 'student', %s::text, %s::timestamptz, %s::int, %s::jsonb), "
    "(%s::uuid, 'patient', %s::text, %s::timestamptz, %s::int, %s::jsonb)) AS v "
    f"WHERE (SELECT g.sc = %s AND NOT ({_FLAG_ON}) FROM g) "
    "RETURNING id, role) "
    "SELECT g.flag, g.sc, (SELECT id FROM ins WHERE role = 'student'), "
    "(SELECT id FROM ins WHERE role = 'patient') FROM g"
)


# ---------------------------------------------------------------------------------------------
# Values as the schema's SQLAlchemy types store them (sa.Uuid, UTCDateTime, sa.JSON), so rows
# written here and rows written through SQLAlchemy are identical.


class Codec:
    """Python values <-> driver values for one dialect."""

    def __init__(self, pg: bool):
        self.pg = pg
        self.sql = PG if pg else SQLITE

    def uid(self, value: uuid.UUID) -> Any:
        return value if self.pg else value.hex

    def when(self, value: datetime) -> Any:
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column; use datetime.now(UTC)")
        if value.tzinfo is not UTC:
            value = value.astimezone(UTC)
        # SQLite: naive UTC text in SQLAlchemy's storage format (microseconds always present)
        return value if self.pg else value.replace(tzinfo=None).isoformat(" ", "microseconds")

    def read_when(self, value: Any) -> datetime:
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def read_uid(self, value: Any) -> uuid.UUID:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(value)

    @staticmethod
    def js(value: Any) -> str:
        return json.dumps(value)  # None -> 'null', as sa.JSON stores it (none_as_null=False)

    @staticmethod
    def read_js(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value


CODECS = {False: Codec(False), True: Codec(True)}
