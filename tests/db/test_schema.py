"""The EMRsim data layer on real SQLite and the real PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from emrops.db import control
from emrops.db.engine import begin_write, create_engine
from emrops.db.migrations_api import current_revision, head_revision, upgrade
from emrops.db.schema import APP_TABLES, messages, metadata, scenarios, sessions
from emrops.sim.catalog import CATALOG, ensure_scenarios


@pytest.fixture
def engine(db_url: str):
    eng = create_engine(db_url)
    upgrade(eng)
    ensure_scenarios(eng)
    yield eng
    eng.dispose()


def test_init_db_cli_is_idempotent(cli, db_url: str) -> None:
    first = cli("sim", "init-db", "--db", db_url, "--json")
    assert first.exit_code == 0, first.stderr
    data = json.loads(first.stdout)
    assert data["revision_before"] is None and data["revision"] == head_revision()
    assert data["scenarios_added"] == len(CATALOG)
    again = json.loads(cli("sim", "init-db", "--db", db_url, "--json").stdout)
    assert again["changed"] is False and again["scenarios_added"] == 0


def test_migrations_match_the_metadata(engine) -> None:
    """The Alembic migrations and schema.py describe the same schema, on both engines."""
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), metadata
        )
    assert diff == []
    assert current_revision(engine) == head_revision()
    names = set(sa.inspect(engine).get_table_names())
    assert set(APP_TABLES) | {"emrops_control", "alembic_version"} <= names


def _new_session(conn) -> uuid.UUID:
    sid = uuid.uuid4()
    scenario_id = conn.execute(sa.select(scenarios.c.id).limit(1)).scalar_one()
    conn.execute(
        sessions.insert().values(id=sid, scenario_id=scenario_id, started_at=datetime.now(UTC))
    )
    return sid


def test_timestamps_are_aware_utc_in_both_engines(engine) -> None:
    cest = timezone(timedelta(hours=2))
    written = datetime(2026, 7, 1, 14, 30, 5, 123456, tzinfo=cest)
    with begin_write(engine) as conn:
        sid = _new_session(conn)
        conn.execute(
            messages.insert().values(
                session_id=sid, role="student", content="hi", created_at=written
            )
        )
    with engine.connect() as conn:
        back = conn.execute(sa.select(messages.c.created_at)).scalar_one()
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)
    assert back == written and back.hour == 12
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), begin_write(engine) as conn:
        conn.execute(
            messages.insert().values(
                session_id=sid, role="student", content="x", created_at=datetime(2026, 1, 1)
            )
        )


@pytest.mark.parametrize(
    "values",
    [
        {"role": "doctor"},  # CHECK on the role enum
        {"tokens": -1},  # CHECK tokens >= 0
        {"session_id": uuid.uuid4()},  # FK to sessions
        {"content": None},  # NOT NULL
    ],
)
def test_constraints_are_enforced(engine, values: dict) -> None:
    with begin_write(engine) as conn:
        sid = _new_session(conn)
    row = {
        "session_id": sid,
        "role": "student",
        "content": "ok",
        "created_at": datetime.now(UTC),
        **values,
    }
    with pytest.raises(sa.exc.IntegrityError), begin_write(engine) as conn:
        conn.execute(messages.insert().values(**row))


def test_sqlite_runs_in_wal_with_busy_timeout_and_foreign_keys(sqlite_url: str) -> None:
    eng = create_engine(sqlite_url)
    upgrade(eng)
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
    eng.dispose()


def test_begin_write_takes_the_write_lock_at_begin(sqlite_url: str, tmp_path: Path) -> None:
    eng = create_engine(sqlite_url)
    upgrade(eng)
    other = sqlite3.connect(tmp_path / "emrsim.db", timeout=0, isolation_level=None)
    with eng.begin() as conn:  # a plain read transaction does not block writers
        conn.exec_driver_sql("SELECT count(*) FROM messages").scalar()
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    # BEGIN IMMEDIATE: the write lock is held from the start
    with begin_write(eng), pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("BEGIN IMMEDIATE")
    other.close()
    eng.dispose()


def test_readonly_engine_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "legacy.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE t (x INTEGER)")
    raw.execute("INSERT INTO t VALUES (1)")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    eng = create_engine(f"sqlite:///{path}", readonly=True)
    with eng.connect() as conn:
        assert conn.exec_driver_sql("SELECT x FROM t").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        with pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.exec_driver_sql("INSERT INTO t VALUES (2)")
    eng.dispose()
    assert path.read_bytes() == before


def test_maintenance_flag_round_trip(cli, engine, db_url: str) -> None:
    assert control.get_maintenance(engine).on is False
    on = cli(
        "sim", "maintenance", "on", "--message", "migrating until 22:00", "--db", db_url, "--json"
    )
    assert on.exit_code == 0, on.stderr
    assert json.loads(on.stdout)["on"] is True
    state = control.get_maintenance(engine)
    assert state.on is True and state.message == "migrating until 22:00"
    assert state.since is not None and state.since.tzinfo is not None
    off = cli("sim", "maintenance", "off", "--db", db_url)
    assert off.exit_code == 0
    assert control.get_maintenance(engine).on is False
