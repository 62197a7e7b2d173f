"""The initial EMRsim-chat schema.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Ts = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(20), nullable=False, server_default="student"),
        sa.Column("created_at", Ts, nullable=False),
        sa.CheckConstraint("role IN ('student', 'instructor', 'admin')", name="ck_users_role"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
    )
    op.create_table(
        "scenarios",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("patient_profile", Json, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scenarios"),
        sa.UniqueConstraint("slug", name="uq_scenarios_slug"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("scenario_id", sa.Integer, nullable=False),
        sa.Column("user_id", sa.Integer, nullable=True),
        sa.Column("status", sa.String(20), nullable=False, server_default="active"),
        sa.Column("started_at", Ts, nullable=False),
        sa.Column("ended_at", Ts, nullable=True),
        sa.Column("score", sa.Float, nullable=True),
        sa.CheckConstraint(
            "status IN ('active', 'completed', 'abandoned')", name="ck_sessions_status"
        ),
        sa.CheckConstraint(
            "score IS NULL OR (score >= 0 AND score <= 100)", name="ck_sessions_score_range"
        ),
        sa.ForeignKeyConstraint(
            ["scenario_id"], ["scenarios.id"], name="fk_sessions_scenario_id_scenarios"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_sessions_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id"])
    op.create_index("ix_sessions_status", "sessions", ["status", "started_at"])
    op.create_index("ix_sessions_scenario", "sessions", ["scenario_id"])
    op.create_table(
        "messages",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", Ts, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("metadata", Json, nullable=True),
        sa.CheckConstraint("role IN ('student', 'patient', 'system')", name="ck_messages_role"),
        sa.CheckConstraint("tokens >= 0", name="ck_messages_tokens_nonneg"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_messages_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index("ix_messages_session_id", "messages", ["session_id", "id"])
    op.create_table(
        "vitals",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("heart_rate", sa.Integer, nullable=False),
        sa.Column("systolic_bp", sa.Integer, nullable=False),
        sa.Column("diastolic_bp", sa.Integer, nullable=False),
        sa.Column("spo2", sa.Integer, nullable=False),
        sa.Column("respiratory_rate", sa.Integer, nullable=False),
        sa.Column("temperature", sa.Float, nullable=False),
        sa.Column("recorded_at", Ts, nullable=False),
        sa.CheckConstraint("heart_rate BETWEEN 0 AND 300", name="ck_vitals_heart_rate_range"),
        sa.CheckConstraint(
            "systolic_bp BETWEEN 0 AND 300 AND diastolic_bp BETWEEN 0 AND 200",
            name="ck_vitals_bp_range",
        ),
        sa.CheckConstraint("spo2 BETWEEN 0 AND 100", name="ck_vitals_spo2_range"),
        sa.CheckConstraint("respiratory_rate BETWEEN 0 AND 80", name="ck_vitals_rr_range"),
        sa.CheckConstraint("temperature BETWEEN 25 AND 45", name="ck_vitals_temperature_range"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_vitals_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_vitals"),
    )
    op.create_index("ix_vitals_session_recorded", "vitals", ["session_id", "recorded_at"])
    op.create_table(
        "audit_log",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("at", Ts, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(100), nullable=False),
        sa.Column("target", sa.String(200), nullable=True),
        sa.Column("details", Json, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_table(
        "emrops_control",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("value", Json, nullable=False),
        sa.Column("updated_at", Ts, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_emrops_control"),
    )


def downgrade() -> None:
    for table in (
        "emrops_control",
        "audit_log",
        "vitals",
        "messages",
        "sessions",
        "scenarios",
        "users",
    ):
        op.drop_table(table)
