"""The lean data path (emrops.db.queries) against the frozen old one (tests/sim/oracle_queries.py)
on real SQLite and the real PostgreSQL, plus its recovery from a dropped connection."""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emrops.db import control, queries
from emrops.db.control import set_maintenance
from emrops.db.engine import create_engine
from emrops.db.schema import metadata
from emrops.errors import DatabaseError
from emrops.sim import patient
from tests.conftest import PG_ADMIN_DSN, PG_HOST, create_pg_database, drop_pg_database
from tests.sim import oracle_queries as oracle
from tests.sim.conftest import init_db

MUTABLE = ("audit_log", "vitals", "messages", "sessions", "users", "emrops_control")
QUESTIONS = ["Where is the pain?", "Any allergies?", "hello", "What brings you in today?", ""]


@pytest.fixture(params=["sqlite", "postgresql"])
def url_pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two initialised databases of one engine: one for the old path, one for the new."""
    if request.param == "sqlite":
        yield (
            init_db(f"sqlite:///{tmp_path / 'old.db'}"),
            init_db(f"sqlite:///{tmp_path / 'new.db'}"),
        )
        return
    names = [create_pg_database(), create_pg_database()]
    try:
        yield tuple(  # type: ignore[misc]
            init_db(f"postgresql+psycopg://postgres@{PG_HOST}/{name}") for name in names
        )
    finally:
        for name in names:
            drop_pg_database(name)


def _reset(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql(f"TRUNCATE {', '.join(MUTABLE)} RESTART IDENTITY CASCADE")
        else:
            for table in MUTABLE:
                conn.exec_driver_sql(f"DELETE FROM {table}")


def _dump(engine: sa.Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table; JSON columns also say whether they are SQL NULL."""
    out = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            # scenarios come from init-db, a moment apart in the two databases
            cols: list[Any] = [
                c for c in table.c if not (table.name == "scenarios" and c.name == "created_at")
            ]
            cols += [c.is_(None) for c in table.c if isinstance(c.type, sa.JSON)]
            rows = conn.execute(sa.select(*cols).order_by(*table.primary_key.columns)).all()
            out[table.name] = [tuple(r) for r in rows]
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__, _plain(dataclasses.asdict(value)))
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _Clock:
    """The clock and uuid4 of both paths, patched: both see the same times and ids. Times count
    from the operation's start (``next_op``), not from the first call of the run, so a path that
    reads the clock before refusing a write (PostgreSQL's one-statement exchange makes its reply
    and timestamps first) does not shift the times of later operations."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.restart()
        for module in (oracle, queries, control):
            monkeypatch.setattr(module, "utcnow", self.now)
        monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(self.ids) * 7919))

    def restart(self) -> None:
        self.op = 0
        self.ticks = itertools.count()
        self.ids = itertools.count(1)

    def next_op(self) -> None:
        self.op += 1
        self.ticks = itertools.count()

    def now(self) -> datetime:
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(
            seconds=self.op, milliseconds=next(self.ticks)
        )


VITALS = st.fixed_dictionaries(
    {
        "heart_rate": st.integers(30, 200),
        "systolic_bp": st.integers(80, 200),
        "diastolic_bp": st.integers(40, 120),
        "spo2": st.integers(70, 100),
        "respiratory_rate": st.integers(5, 40),
        "temperature": st.sampled_from([35.5, 36.8, 38.2, 39.0]),
    }
)
TEXT = st.one_of(
    st.sampled_from(QUESTIONS),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30),
)
OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("create"),
            st.integers(0, 4),  # scenario id 0 does not exist
            st.sampled_from([None, "a@x.org", " B@X.org ", "a@x.org"]),
            st.booleans(),
        ),
        st.tuples(st.just("exchange"), st.integers(0, 6), TEXT),
        st.tuples(st.just("vitals"), st.integers(0, 6), VITALS),
        st.tuples(st.just("list"), st.integers(0, 6), st.integers(0, 30), st.integers(0, 12)),
        st.tuples(st.just("last"), st.integers(0, 6), st.integers(0, 60)),
        st.tuples(st.just("list_vitals"), st.integers(0, 6), st.integers(1, 5)),
        st.tuples(st.just("get_session"), st.integers(0, 6)),
        st.tuples(st.just("scenario"), st.integers(0, 4)),
        st.tuples(st.just("scenarios")),
        st.tuples(st.just("maintenance"), st.booleans(), st.booleans()),
    ),
    max_size=25,
)


def _apply(engine: sa.Engine, ops: list[tuple[Any, ...]], new: bool, clock: _Clock) -> list[Any]:
    """Run ``ops`` through the new (``new``) or the old path; return what each call gave."""
    mod: Any = queries if new else oracle
    made: list[uuid.UUID] = []
    force = {"on": False}
    out: list[Any] = []

    def sid(k: int) -> uuid.UUID:
        return made[k % len(made)] if made and k < 5 else uuid.UUID(int=424242)

    for op in ops:
        kind, *args = op
        clock.next_op()
        try:
            if kind == "create":
                vitals_arg: Any = (patient.sample_vitals if args[2] else None) if new else args[2]
                row = mod.create_session(
                    engine,
                    args[0],
                    args[1],
                    initial_vitals=vitals_arg,
                    respect_maintenance=not force["on"],
                )
                made.append(row.id)
                got: Any = row
            elif kind == "exchange":
                extra = {"reply": patient.reply} if new else {}
                got = mod.add_exchange(
                    engine, sid(args[0]), args[1], respect_maintenance=not force["on"], **extra
                )
            elif kind == "vitals":
                got = mod.add_vitals(
                    engine, sid(args[0]), args[1], respect_maintenance=not force["on"]
                )
            elif kind == "list":
                got = mod.list_messages(engine, sid(args[0]), after=args[1], limit=args[2])
            elif kind == "last":
                got = mod.last_messages(engine, sid(args[0]), args[1])
            elif kind == "list_vitals":
                got = mod.list_vitals(engine, sid(args[0]), limit=args[1])
            elif kind == "get_session":
                got = mod.get_session(engine, sid(args[0]))
            elif kind == "scenario":
                got = mod.get_scenario(engine, args[0])
            elif kind == "scenarios":
                got = mod.list_scenarios(engine)
            else:
                got = set_maintenance(engine, args[0], "test")
                force["on"] = args[1]  # a tool writing on purpose during maintenance
            out.append(_plain(got))
        except (oracle.NotFound, queries.NotFound) as exc:
            out.append(("NotFound", exc.kind, str(exc.key)))
        except (oracle.MaintenanceOn, queries.MaintenanceOn) as exc:
            out.append(("MaintenanceOn", str(exc)))
    return out


def test_lean_path_matches_the_old_one(
    url_pair: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock(monkeypatch)
    old_engine = create_engine(url_pair[0])
    new_engine = create_engine(url_pair[1], pre_ping=False)

    @settings(
        max_examples=30,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(OPS)
    def check(ops: list[tuple[Any, ...]]) -> None:
        _reset(old_engine)
        _reset(new_engine)
        clock.restart()
        expected = _apply(old_engine, ops, new=False, clock=clock)
        clock.restart()
        got = _apply(new_engine, ops, new=True, clock=clock)
        assert got == expected
        assert _dump(new_engine) == _dump(old_engine)

    try:
        check()
    finally:
        old_engine.dispose()
        new_engine.dispose()


def _terminate_other_backends(dbname: str) -> int:
    """Terminate the database's other backends and wait (up to 5 s each) until they are gone,
    as after a restart: the drop has happened before the next operation starts. (A backend
    killed while an operation is in flight is the unknown-outcome case, tested below.)"""
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchone()
    return int(row[0]) if row else 0


def _message_count(engine: sa.Engine, session_id: uuid.UUID) -> int:
    return len(queries.list_messages(engine, session_id, limit=500))


def test_dropped_connection_costs_one_retry_not_an_error(pg_db: str) -> None:
    """pg_terminate_backend under the hot path: the next read and the next exchange each succeed
    after one retry on a fresh connection, and no message is stored twice."""
    engine = create_engine(pg_db, pool_size=3, max_overflow=0, pre_ping=False)
    dbname = pg_db.rsplit("/", 1)[1]
    try:
        session = queries.create_session(engine, 1)
        for _ in range(3):
            queries.add_exchange(engine, session.id, "warm up", reply=patient.reply)
        assert _terminate_other_backends(dbname) >= 1
        before = queries.retried_operations()
        exchange = queries.add_exchange(engine, session.id, "after the drop", reply=patient.reply)
        assert queries.retried_operations() == before + 1
        assert exchange.patient.id == exchange.student.id + 1
        assert _message_count(engine, session.id) == 8  # 4 exchanges, none twice

        assert _terminate_other_backends(dbname) >= 1
        rows = queries.last_messages(engine, session.id, 50)
        assert queries.retried_operations() == before + 2
        assert [r.content for r in rows][-2] == "after the drop"
        # the other pooled connections were replaced too: no error and no retry afterwards
        for _ in range(5):
            queries.get_session(engine, session.id)
        assert queries.retried_operations() == before + 2
    finally:
        engine.dispose()


def test_unreachable_database_is_a_database_error(pg_url: str) -> None:
    """A connect that fails is a DatabaseError with the driver's reason (503 in the server)."""
    engine = create_engine(pg_url.rsplit("/", 1)[0] + "/no_such_db_emrops", pre_ping=False)
    try:
        with pytest.raises(DatabaseError, match="does not exist") as caught:
            queries.last_messages(engine, uuid.uuid4())
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
    finally:
        engine.dispose()


def test_connection_lost_during_commit_is_an_error_not_a_retry(pg_db: str) -> None:
    """When the connection dies with the COMMIT in flight the outcome is unknown: the call
    raises DatabaseError (the server answers 503) and is not repeated, so nothing is stored
    twice. Here the server ends the session while the exchange waits before its COMMIT."""
    engine = create_engine(pg_db, pool_size=1, max_overflow=0, pre_ping=False)
    try:
        session = queries.create_session(engine, 1)
        before = queries.retried_operations()

        def stall(cur: Any, _sid: uuid.UUID, _last: int) -> None:
            cur.execute("SET LOCAL idle_in_transaction_session_timeout = '50ms'")
            time.sleep(0.5)  # the server gives up on the idle transaction meanwhile

        with pytest.raises(DatabaseError, match="lost during COMMIT") as caught:
            queries.add_exchange(
                engine, session.id, "in doubt", reply=patient.reply, announce=stall
            )
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)  # -> 503
        assert queries.retried_operations() == before  # not repeated
        assert _message_count(engine, session.id) == 0  # this time the server rolled it back
        queries.add_exchange(engine, session.id, "next one", reply=patient.reply)
        assert _message_count(engine, session.id) == 2
    finally:
        engine.dispose()
