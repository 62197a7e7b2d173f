"""The data layer's run loop (emrops.db.pooled) on the real PostgreSQL: PostgreSQL's
one-statement exchange keeps the maintenance guarantee and the unknown-outcome rule, and a
pinned connection is one backend, replaced once when it drops."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from emrops.db import queries
from emrops.db.engine import create_engine
from emrops.errors import DatabaseError
from emrops.sim import patient
from tests.conftest import PG_ADMIN_DSN
from tests.sim.conftest import init_db, wait_for


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    eng = create_engine(init_db(pg_url), pool_size=2, max_overflow=0, pre_ping=False)
    yield eng
    eng.dispose()


def _dbname(engine: sa.Engine) -> str:
    name = engine.url.database
    assert name
    return name


def _admin(engine: sa.Engine) -> psycopg.Connection[Any]:
    return psycopg.connect(f"{PG_ADMIN_DSN} dbname={_dbname(engine)}")


def _count(engine: sa.Engine, session_id: uuid.UUID) -> int:
    return len(queries.list_messages(engine, session_id, limit=500))


def _waiting_pid(dbname: str) -> int | None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else None


def _exchange_in_thread(engine: sa.Engine, session_id: uuid.UUID) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["result"] = queries.add_exchange(
                engine, session_id, "Where is the pain?", reply=patient.reply
            )
        except Exception as exc:
            out["error"] = exc

    out["thread"] = threading.Thread(target=go, daemon=True)
    out["thread"].start()
    return out


@pytest.mark.parametrize("row_exists", [True, False])
def test_maintenance_switched_on_while_an_exchange_waits_refuses_it(
    engine: sa.Engine, row_exists: bool
) -> None:
    """`maintenance on` (LOCK TABLE ... EXCLUSIVE, then the flag) commits while the exchange's
    statement waits for the lock: the statement sees the flag on and stores nothing, also when
    the flag row is created by this switch (the first ever)."""
    session = queries.create_session(engine, 1)
    queries.add_exchange(engine, session.id, "warm up", reply=patient.reply)  # scenario cached
    with _admin(engine) as admin:
        if not row_exists:
            admin.execute("DELETE FROM emrops_control")
            admin.commit()
        admin.execute("LOCK TABLE emrops_control IN EXCLUSIVE MODE")
        admin.execute(
            "INSERT INTO emrops_control (key, value, updated_at) "
            'VALUES (\'maintenance\', \'{"on": true, "message": "copying"}\', now()) '
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        )
        pending = _exchange_in_thread(engine, session.id)
        assert wait_for(lambda: _waiting_pid(_dbname(engine)) is not None, 10)
        admin.commit()
    pending["thread"].join(10)
    assert isinstance(pending.get("error"), queries.MaintenanceOn), pending
    assert "copying" in str(pending["error"])
    assert _count(engine, session.id) == 2  # only the warm-up exchange


def test_connection_lost_with_the_statement_in_flight_is_an_error_not_a_retry(
    engine: sa.Engine,
) -> None:
    """The one-statement exchange is its own COMMIT: when its backend is terminated while the
    statement waits (here for a lock) the outcome is unknown to the client, so it raises
    DatabaseError (503 in the server) and is not repeated."""
    session = queries.create_session(engine, 1)
    queries.add_exchange(engine, session.id, "warm up", reply=patient.reply)
    before = queries.retried_operations()
    with _admin(engine) as admin:
        admin.execute("LOCK TABLE emrops_control IN EXCLUSIVE MODE")
        pending = _exchange_in_thread(engine, session.id)
        assert wait_for(lambda: _waiting_pid(_dbname(engine)) is not None, 10)
        pid = _waiting_pid(_dbname(engine))
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
        pending["thread"].join(10)
        admin.rollback()
    error = pending.get("error")
    assert isinstance(error, DatabaseError), pending
    assert "lost during COMMIT" in str(error)
    assert isinstance(error.__cause__, sa.exc.OperationalError)
    assert queries.retried_operations() == before
    assert _count(engine, session.id) == 2  # the warm-up only: nothing stored twice


def _backend_pid(engine: sa.Engine) -> int:
    def work(cur: Any, _codec: Any, _a: Any) -> int:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])

    pid: int = queries._run(engine, work)
    return pid


def test_pinned_thread_uses_one_backend_and_replaces_it_once_when_dropped(
    engine: sa.Engine,
) -> None:
    session = queries.create_session(engine, 1)
    pool = engine.pool
    with queries.pinned(engine):
        first = _backend_pid(engine)
        queries.add_exchange(engine, session.id, "one", reply=patient.reply)
        queries.last_messages(engine, session.id)
        assert _backend_pid(engine) == first
        assert pool.checkedout() == 1  # type: ignore[attr-defined]
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
        before = queries.retried_operations()
        exchange = queries.add_exchange(engine, session.id, "two", reply=patient.reply)
        assert queries.retried_operations() == before + 1
        assert exchange.patient.id == exchange.student.id + 1
        second = _backend_pid(engine)
        assert second != first
        assert queries.retried_operations() == before + 1
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    assert [m.content for m in queries.last_messages(engine, session.id)][::2] == ["one", "two"]
    # returned to the pool in transaction mode, as SQLAlchemy expects its connections
    with engine.connect() as conn:
        assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]


def test_exchange_on_a_session_recreated_with_another_scenario(engine: sa.Engine) -> None:
    """The per-process cache of each session's scenario goes stale when a session id comes
    back with another scenario (a restore): the statement notices, and the reply is made again
    from the right profile."""
    session = queries.create_session(engine, 1)
    queries.add_exchange(engine, session.id, "hello", reply=patient.reply)
    with _admin(engine) as admin:
        admin.execute("DELETE FROM messages")
        admin.execute("UPDATE sessions SET scenario_id = 2 WHERE id = %s", (session.id,))
        admin.commit()
    seen: list[Any] = []

    def spy(profile: Any, text: str) -> Any:
        seen.append(profile)
        return patient.reply(profile, text)

    queries.add_exchange(engine, session.id, "hello again", reply=spy)
    assert seen[-1] == queries.get_scenario(engine, 2).patient_profile  # type: ignore[union-attr]
    assert _count(engine, session.id) == 2


def test_message_rows_built_for_speed_are_ordinary_frozen_rows() -> None:
    """_messages fills __dict__ instead of calling MessageRow's __init__ (speed): the result
    must be indistinguishable from MessageRow(...)."""
    import dataclasses
    from datetime import UTC, datetime

    sid = uuid.uuid4()
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    fast = queries._messages(queries._CODECS[True], sid, [(7, "patient", "ouch", at)])[0]
    slow = queries.MessageRow(7, sid, "patient", "ouch", at)
    assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
    assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.content = "changed"  # type: ignore[misc]
