"""emrops.db.queries on real SQLite and the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa

from emrops.db import queries
from emrops.db.control import set_maintenance
from emrops.db.engine import create_engine
from emrops.db.schema import audit_log, messages, sessions, users, vitals
from emrops.errors import DatabaseError
from emrops.sim.events import CHANNEL, pg_notify
from emrops.sim.patient import VITAL_LIMITS, reply, sample_vitals


@pytest.fixture
def engine(sim_db: str) -> Iterator[sa.Engine]:
    eng = create_engine(sim_db)
    yield eng
    eng.dispose()


def _count(engine: sa.Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
        )


def test_scenarios_are_listed_in_id_order(engine: sa.Engine) -> None:
    rows = queries.list_scenarios(engine)
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[0].slug == "chest-pain"
    assert rows[0].patient_profile["vitals_baseline"]["heart_rate"] == 104
    assert queries.get_scenario(engine, rows[1].id).slug == rows[1].slug  # type: ignore[union-attr]
    assert queries.get_scenario(engine, 10_000) is None


def test_create_session_records_user_vitals_and_audit(engine: sa.Engine) -> None:
    created = queries.create_session(
        engine, 1, " Student@Example.org ", initial_vitals=sample_vitals
    )
    assert created.status == "active" and created.user_email == "student@example.org"
    assert created.started_at.tzinfo is not None
    again = queries.create_session(engine, 2, "student@example.org")
    assert _count(engine, users, users.c.email == "student@example.org") == 1  # found, not added
    fetched = queries.get_session(engine, created.id)
    assert fetched == created
    assert queries.get_session(engine, again.id).scenario_id == 2  # type: ignore[union-attr]
    triage = queries.list_vitals(engine, created.id)
    assert len(triage) == 1
    for key, (low, high) in VITAL_LIMITS.items():
        assert low <= getattr(triage[0], key) <= high
    assert _count(engine, audit_log, audit_log.c.target == str(created.id)) == 1
    assert queries.get_session(engine, uuid.uuid4()) is None


def test_create_session_for_unknown_scenario_adds_nothing(engine: sa.Engine) -> None:
    with pytest.raises(queries.NotFound, match="scenario 999 not found"):
        queries.create_session(engine, 999, "x@example.org")
    assert _count(engine, sessions) == 0 and _count(engine, users) == 0


def test_exchange_stores_both_messages_with_growing_ids(engine: sa.Engine) -> None:
    session = queries.create_session(engine, 1)
    first = queries.add_exchange(engine, session.id, "Where is the pain?", reply=reply)
    second = queries.add_exchange(engine, session.id, "Any allergies?", reply=reply)
    assert first.student.role == "student" and first.patient.role == "patient"
    assert first.student.id < first.patient.id < second.student.id < second.patient.id
    assert "left arm" in first.patient.content and "enicillin" in second.patient.content
    stored = queries.list_messages(engine, session.id)
    assert [m.id for m in stored] == [
        first.student.id,
        first.patient.id,
        second.student.id,
        second.patient.id,
    ]
    assert stored[0] == first.student  # same content and timestamps as returned
    with engine.connect() as conn:
        meta = conn.execute(
            sa.select(messages.c.metadata, messages.c.tokens).where(
                messages.c.id == first.patient.id
            )
        ).one()
    assert meta.metadata["topic"] == "pain" and meta.tokens > 3


def test_exchange_is_one_transaction(engine: sa.Engine) -> None:
    """If anything fails after the inserts (here: the announce hook), neither message stays."""
    session = queries.create_session(engine, 1)

    def fail(_cur: object, _sid: uuid.UUID, _last: int) -> None:
        raise RuntimeError("boom after insert")

    with pytest.raises(RuntimeError, match="boom"):
        queries.add_exchange(engine, session.id, "hello", announce=fail, reply=reply)
    assert _count(engine, messages) == 0


def test_exchange_for_unknown_session(engine: sa.Engine) -> None:
    with pytest.raises(queries.NotFound, match="not found"):
        queries.add_exchange(engine, uuid.uuid4(), "hello", reply=reply)


def test_pages_after_an_id_and_last_messages(engine: sa.Engine) -> None:
    session = queries.create_session(engine, 3)
    other = queries.create_session(engine, 3)
    for i in range(5):
        queries.add_exchange(engine, session.id, f"question {i}", reply=reply)
        queries.add_exchange(engine, other.id, f"other {i}", reply=reply)
    everything = queries.list_messages(engine, session.id, limit=500)
    assert len(everything) == 10 and {m.session_id for m in everything} == {session.id}
    page1 = queries.list_messages(engine, session.id, after=0, limit=4)
    page2 = queries.list_messages(engine, session.id, after=page1[-1].id, limit=4)
    page3 = queries.list_messages(engine, session.id, after=page2[-1].id, limit=4)
    assert page1 + page2 + page3 == everything
    assert queries.list_messages(engine, session.id, after=everything[-1].id) == []
    assert queries.last_messages(engine, session.id, limit=3) == everything[-3:]
    assert queries.list_messages(engine, session.id, limit=10_000) == everything  # capped, not err


def test_vitals_insert_and_list(engine: sa.Engine) -> None:
    session = queries.create_session(engine, 2, initial_vitals=None)
    sample = {
        "heart_rate": 120,
        "systolic_bp": 110,
        "diastolic_bp": 70,
        "spo2": 91,
        "respiratory_rate": 28,
        "temperature": 37.4,
    }
    row = queries.add_vitals(engine, session.id, sample)
    assert row.spo2 == 91 and row.temperature == pytest.approx(37.4)
    assert queries.list_vitals(engine, session.id) == [row]
    with pytest.raises(DatabaseError):  # the table's CHECK ranges hold
        queries.add_vitals(engine, session.id, {**sample, "spo2": 120})
    with pytest.raises(queries.NotFound):
        queries.add_vitals(engine, uuid.uuid4(), sample)
    assert _count(engine, vitals) == 1


def test_writes_refused_in_maintenance_reads_work(engine: sa.Engine) -> None:
    session = queries.create_session(engine, 1)
    set_maintenance(engine, True, "cutover to PostgreSQL")
    with pytest.raises(queries.MaintenanceOn, match="cutover to PostgreSQL"):
        queries.add_exchange(engine, session.id, "hello", reply=reply)
    with pytest.raises(queries.MaintenanceOn):
        queries.create_session(engine, 1)
    assert queries.get_session(engine, session.id) is not None
    assert queries.list_messages(engine, session.id) == []
    # A tool that owns the database during maintenance can still write on purpose.
    queries.add_exchange(engine, session.id, "hello", respect_maintenance=False, reply=reply)
    set_maintenance(engine, False)
    assert queries.add_exchange(engine, session.id, "hi", reply=reply).student.content == "hi"
    assert len(queries.list_messages(engine, session.id)) == 4


def test_audit_entry(engine: sa.Engine) -> None:
    entry = queries.add_audit(engine, "ops@example.org", "maintenance.on", "sim", {"why": "test"})
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_log).where(audit_log.c.id == entry)).one()
    assert (row.actor, row.action, row.details) == (
        "ops@example.org",
        "maintenance.on",
        {"why": "test"},
    )


def test_notify_is_sent_only_on_commit(pg_db: str) -> None:
    """pg_notify inside add_exchange: a rolled-back exchange announces nothing."""
    engine = create_engine(pg_db)
    dsn = pg_db.replace("postgresql+psycopg://", "postgresql://")
    try:
        session = queries.create_session(engine, 1)
        with psycopg.connect(dsn, autocommit=True) as listener:
            listener.execute(f"LISTEN {CHANNEL}")

            def notify_then_fail(cur: object, sid: uuid.UUID, last: int) -> None:
                pg_notify(cur, sid, last)
                raise RuntimeError("rollback")

            with pytest.raises(RuntimeError):
                queries.add_exchange(
                    engine, session.id, "lost", announce=notify_then_fail, reply=reply
                )
            assert list(listener.notifies(timeout=0.5)) == []
            done = queries.add_exchange(engine, session.id, "kept", announce=pg_notify, reply=reply)
            got = list(listener.notifies(timeout=5, stop_after=1))
        assert [n.payload for n in got] == [f"{session.id.hex}:{done.patient.id}"]
    finally:
        engine.dispose()


@pytest.mark.parametrize("write", ["exchange", "message"])
def test_a_sessions_messages_commit_in_id_order(pg_db: str, write: str) -> None:
    """Readers page by id ("after the last id I saw"), so no message may commit with a lower id
    than one already visible. An exchange held open before its COMMIT (the announce hook runs
    inside the transaction) keeps a second write to the SAME session waiting, so a reader
    meanwhile sees neither; a write to another session is not held up."""
    import threading

    engine = create_engine(pg_db)
    try:
        first = queries.create_session(engine, 1)
        other = queries.create_session(engine, 1)
        held, release = threading.Event(), threading.Event()

        def hold(_cur: object, _sid: uuid.UUID, _last: int) -> None:
            held.set()
            assert release.wait(10)

        def second_write() -> None:
            if write == "exchange":
                queries.add_exchange(engine, first.id, "second", reply=reply)
            else:
                queries.add_message(engine, first.id, "second")

        t1 = threading.Thread(
            target=queries.add_exchange,
            args=(engine, first.id, "first"),
            kwargs={"reply": reply, "announce": hold},
        )
        t1.start()
        assert held.wait(10)
        t2 = threading.Thread(target=second_write)
        t2.start()
        t2.join(0.5)
        try:
            assert t2.is_alive(), "a second write to the session did not wait for the first"
            assert queries.list_messages(engine, first.id, after=0) == []
            queries.add_exchange(engine, other.id, "elsewhere", reply=reply)  # not held up
        finally:
            release.set()
            t1.join(10)
            t2.join(10)
        rows = queries.list_messages(engine, first.id, after=0)
        assert [r.id for r in rows] == sorted(r.id for r in rows)
        assert (rows[0].content, rows[2].content) == ("first", "second")
    finally:
        engine.dispose()
