"""Tick claiming on PostgreSQL: several schedulers, one run per (job, scheduled fire time).

Each app instance may run its own scheduler against one PostgreSQL database. Before a job runs
it inserts the row ``(job, fire_time)`` into ``emrops_schedule_ticks`` under a transaction-level
advisory lock; only the instance whose insert went through runs the job, whatever the timing of
the others (the primary key makes the insert idempotent, the advisory lock serialises the
check-and-insert and the table creation).

The table is emrops' own bookkeeping, not part of the EMRsim schema, so it is created here
with ``CREATE TABLE IF NOT EXISTS`` rather than by an Alembic migration of the app's schema.
On SQLite (one process owns the file) there is nothing to claim: every run proceeds.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from emrops.db.engine import create_engine, db_errors, parse_db_url

TABLE = "emrops_schedule_ticks"
# pg_advisory_xact_lock key: a fixed 64-bit number ("emrops" ticks), released at commit
LOCK_KEY = 0x656D726F70735449
DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    job TEXT NOT NULL,
    fire_time TIMESTAMPTZ NOT NULL,
    claimed_by TEXT NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job, fire_time)
)
"""


@dataclass
class Claim:
    claimed: bool
    job: str
    fire_time: datetime
    holder: str  # who has the tick (us when claimed)


def needs_claim(db_url: str) -> bool:
    return parse_db_url(db_url).engine_name == "postgresql"


def claim_tick(db_url: str, job: str, fire_time: datetime, me: str | None = None) -> Claim:
    """Claim (job, fire_time); ``claimed`` is False when another instance already has it.

    Raises DatabaseError when PostgreSQL cannot be reached (the job then fails and says so).
    """
    me = me or socket.gethostname()
    db = parse_db_url(db_url)
    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        with db_errors(db), engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            conn.exec_driver_sql(DDL)
            inserted = conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} (job, fire_time, claimed_by) "
                    "VALUES (:job, :fire_time, :me) ON CONFLICT DO NOTHING RETURNING claimed_by"
                ),
                {"job": job, "fire_time": fire_time, "me": me},
            ).scalar()
            if inserted is not None:
                return Claim(True, job, fire_time, me)
            holder = conn.execute(
                sa.text(f"SELECT claimed_by FROM {TABLE} WHERE job = :job AND fire_time = :ft"),
                {"job": job, "ft": fire_time},
            ).scalar()
            return Claim(False, job, fire_time, str(holder))
    finally:
        engine.dispose()


def claimed_ticks(db_url: str, job: str) -> list[tuple[datetime, str]]:
    """Every claimed tick of ``job`` (oldest first); empty when the table does not exist yet."""
    db = parse_db_url(db_url)
    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        with db_errors(db), engine.connect() as conn:
            if not sa.inspect(conn).has_table(TABLE):
                return []
            rows = conn.execute(
                sa.text(
                    f"SELECT fire_time, claimed_by FROM {TABLE} WHERE job = :job ORDER BY fire_time"
                ),
                {"job": job},
            ).all()
            return [(r[0], r[1]) for r in rows]
    finally:
        engine.dispose()
