"""The EMRsim-chat schema as SQLAlchemy Core metadata (the Alembic migrations mirror it).

Hot queries and their indexes:
- a session's messages in id order, paged with ``after`` -> ix_messages_session_id (session_id, id)
- a session's vitals over a time range -> ix_vitals_session_recorded (session_id, recorded_at)
- sessions of a user / by status -> ix_sessions_user, ix_sessions_status
"""

from __future__ import annotations

import sqlalchemy as sa

from emrops.db.types import BigId, JsonType, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

USER_ROLES = ("student", "instructor", "admin")
SESSION_STATUSES = ("active", "completed", "abandoned")
MESSAGE_ROLES = ("student", "patient", "system")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False, server_default="student"),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.CheckConstraint(_in("role", USER_ROLES), name="role"),
)

scenarios = sa.Table(
    "scenarios",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("slug", sa.String(100), nullable=False, unique=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, server_default=""),
    sa.Column("patient_profile", JsonType, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("scenario_id", sa.Integer, sa.ForeignKey("scenarios.id"), nullable=False),
    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True),
    sa.Column("status", sa.String(20), nullable=False, server_default="active"),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime, nullable=True),
    sa.Column("score", sa.Float, nullable=True),
    sa.CheckConstraint(_in("status", SESSION_STATUSES), name="status"),
    sa.CheckConstraint("score IS NULL OR (score >= 0 AND score <= 100)", name="score_range"),
    sa.Index("ix_sessions_user", "user_id"),
    sa.Index("ix_sessions_status", "status", "started_at"),
    sa.Index("ix_sessions_scenario", "scenario_id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("metadata", JsonType, nullable=True),
    sa.CheckConstraint(_in("role", MESSAGE_ROLES), name="role"),
    sa.CheckConstraint("tokens >= 0", name="tokens_nonneg"),
    sa.Index("ix_messages_session_id", "session_id", "id"),
)

vitals = sa.Table(
    "vitals",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("heart_rate", sa.Integer, nullable=False),
    sa.Column("systolic_bp", sa.Integer, nullable=False),
    sa.Column("diastolic_bp", sa.Integer, nullable=False),
    sa.Column("spo2", sa.Integer, nullable=False),
    sa.Column("respiratory_rate", sa.Integer, nullable=False),
    sa.Column("temperature", sa.Float, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.CheckConstraint("heart_rate BETWEEN 0 AND 300", name="heart_rate_range"),
    sa.CheckConstraint(
        "systolic_bp BETWEEN 0 AND 300 AND diastolic_bp BETWEEN 0 AND 200", name="bp_range"
    ),
    sa.CheckConstraint("spo2 BETWEEN 0 AND 100", name="spo2_range"),
    sa.CheckConstraint("respiratory_rate BETWEEN 0 AND 80", name="rr_range"),
    sa.CheckConstraint("temperature BETWEEN 25 AND 45", name="temperature_range"),
    sa.Index("ix_vitals_session_recorded", "session_id", "recorded_at"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(100), nullable=False),
    sa.Column("target", sa.String(200), nullable=True),
    sa.Column("details", JsonType, nullable=True),
    sa.Index("ix_audit_log_at", "at"),
)

emrops_control = sa.Table(
    "emrops_control",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", JsonType, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# Tables in dependency order (parents first): seeding, copying and row counts use it.
APP_TABLES = ("users", "scenarios", "sessions", "messages", "vitals", "audit_log")
