"""emrops.sim.seed and `emrops sim seed` on real SQLite files and the real PostgreSQL."""

from __future__ import annotations

import json
import math
import re
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from emrops.db.engine import create_engine
from emrops.db.migrations_api import upgrade
from emrops.db.schema import messages, scenarios, sessions, users, vitals
from emrops.errors import DatabaseError, UsageError
from emrops.sim.catalog import CATALOG
from emrops.sim.seed import EMAIL_DOMAIN, SEED_EPOCH, WINDOW_DAYS, SeedResult, seed_database
from tests.sim.conftest import init_db


@pytest.fixture
def engine(sim_db: str) -> Iterator[sa.Engine]:
    """An engine on an initialised database (schema + catalog), SQLite and PostgreSQL."""
    eng = create_engine(sim_db)
    yield eng
    eng.dispose()


def _count(engine: sa.Engine, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(*where)
        return int(conn.execute(query).scalar_one())


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every seeded row, read back through SQLAlchemy Core (sessions in time order)."""
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            return {
                table.name: [tuple(r) for r in conn.execute(sa.select(table).order_by(order))]
                for table, order in (
                    (users, users.c.id),
                    (sessions, sessions.c.started_at),
                    (messages, messages.c.id),
                    (vitals, vitals.c.id),
                )
            }
    finally:
        eng.dispose()


def _seed(url: str, **kwargs: Any) -> SeedResult:
    eng = create_engine(url)
    try:
        return seed_database(eng, **kwargs)
    finally:
        eng.dispose()


def test_counts_match_the_request(engine: sa.Engine) -> None:
    result = seed_database(engine, sessions=12, messages_per_session=6, seed=3)
    assert (result.sessions, result.messages, result.users) == (12, 72, 2)
    assert result.engine == engine.dialect.name and result.seconds >= 0
    assert _count(engine, sessions) == 12
    assert _count(engine, messages) == 72
    assert _count(engine, users) == 2
    assert _count(engine, vitals) == result.vitals >= 12 * 3  # 3 to 6 samples per session


def test_odd_and_zero_messages_per_session(engine: sa.Engine) -> None:
    assert seed_database(engine, sessions=3, messages_per_session=5).messages == 15
    assert seed_database(engine, sessions=2, messages_per_session=0).messages == 0
    assert _count(engine, sessions) == 5 and _count(engine, messages) == 15


def test_same_seed_gives_identical_rows_in_fresh_databases(tmp_path: Path) -> None:
    first, second, other = (init_db(f"sqlite:///{tmp_path / n}.db") for n in ("a", "b", "c"))
    _seed(first, sessions=15, messages_per_session=8, seed=42)
    _seed(second, sessions=15, messages_per_session=8, seed=42)
    _seed(other, sessions=15, messages_per_session=8, seed=43)
    a, b, c = _dump(first), _dump(second), _dump(other)
    assert a == b
    assert [r[0] for r in a["sessions"]] != [r[0] for r in c["sessions"]]
    assert [r[3] for r in a["messages"]] != [r[3] for r in c["messages"]]


def test_sqlite_and_postgresql_get_the_same_rows(tmp_path: Path, pg_url: str) -> None:
    lite = init_db(f"sqlite:///{tmp_path / 'lite.db'}")
    _seed(lite, sessions=10, messages_per_session=6, seed=9)
    _seed(init_db(pg_url), sessions=10, messages_per_session=6, seed=9)
    assert _dump(lite) == _dump(pg_url)


def test_conversations_alternate_roles_in_time_order(engine: sa.Engine) -> None:
    seed_database(engine, sessions=8, messages_per_session=7, seed=5)
    with engine.connect() as conn:
        slugs = dict(conn.execute(sa.select(scenarios.c.id, scenarios.c.slug)).all())
        by_slug = {item["slug"]: item["patient_profile"] for item in CATALOG}
        profiles = {sid: by_slug[slug] for sid, slug in slugs.items()}
        seeded = conn.execute(sa.select(sessions)).all()
        assert len(seeded) == 8
        for s in seeded:
            assert isinstance(s.id, uuid.UUID) and s.id.version == 7
            rows = conn.execute(
                sa.select(messages).where(messages.c.session_id == s.id).order_by(messages.c.id)
            ).all()
            assert [m.role for m in rows] == ["student", "patient"] * 3 + ["student"]
            times = [m.created_at for m in rows]
            assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
            assert s.started_at < times[0]
            assert all(earlier < later for earlier, later in zip(times, times[1:], strict=False))
            # The patient speaks from the scenario's profile: the greeting names them.
            assert profiles[s.scenario_id]["name"] in rows[1].content
            for m in rows:
                assert m.tokens == math.ceil(len(m.content.split()) * 1.3) > 0
                if m.role == "student":
                    assert m.metadata is None
                else:
                    assert set(m.metadata) == {"topic", "latency_ms"}
            if s.status == "active":
                assert s.ended_at is None and s.score is None
            else:
                assert s.ended_at.tzinfo is not None and s.ended_at > times[-1]
                assert (s.score is not None) == (s.status == "completed")


def test_values_respect_the_schema_checks(engine: sa.Engine) -> None:
    # PostgreSQL enforces every CHECK at insert time; this also states the ranges on SQLite.
    seed_database(engine, sessions=60, messages_per_session=2, seed=11)
    with engine.connect() as conn:
        statuses = set(conn.execute(sa.select(sessions.c.status)).scalars())
        scores = [x for x in conn.execute(sa.select(sessions.c.score)).scalars() if x is not None]
        samples = conn.execute(sa.select(vitals)).all()
        roles = set(conn.execute(sa.select(users.c.role)).scalars())
    assert statuses <= {"active", "completed", "abandoned"} and "completed" in statuses
    assert scores and all(0 <= x <= 100 for x in scores)
    assert roles <= {"student", "instructor", "admin"}
    for v in samples:
        assert 0 <= v.heart_rate <= 300 and 0 <= v.spo2 <= 100
        assert 0 <= v.diastolic_bp < v.systolic_bp <= 300
        assert 0 <= v.respiratory_rate <= 80 and 25 <= v.temperature <= 45
        assert v.recorded_at.tzinfo is not None


def test_sqlite_rows_are_stored_the_way_sqlalchemy_writes_them(sqlite_url: str) -> None:
    init_db(sqlite_url)
    eng = create_engine(sqlite_url, pool_size=1, max_overflow=0)  # reuse the seed's connection
    try:
        seed_database(eng, sessions=4, messages_per_session=4, seed=2)
        with eng.connect() as conn:
            first = conn.execute(sa.select(sessions).order_by(sessions.c.started_at)).first()
            assert first is not None
            # SQLAlchemy binds a uuid.UUID and an aware datetime in its own text formats:
            # these match only if the seeded text is byte-for-byte the same format.
            by_id = conn.execute(
                sa.select(sa.func.count()).where(messages.c.session_id == first.id)
            ).scalar_one()
            since = conn.execute(
                sa.select(sa.func.count()).where(
                    messages.c.session_id == first.id,
                    messages.c.created_at >= first.started_at,
                    messages.c.created_at < first.started_at + timedelta(days=1),
                )
            ).scalar_one()
            assert by_id == since == 4
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL again
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000
    finally:
        eng.dispose()
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as raw:
        session_id, started = raw.execute("SELECT id, started_at FROM sessions LIMIT 1").fetchone()
        created = raw.execute("SELECT created_at FROM messages LIMIT 1").fetchone()[0]
        assert re.fullmatch(r"[0-9a-f]{32}", session_id)
        for text in (started, created):
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", text)
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_seeding_twice_appends_and_sequences_stay_usable(engine: sa.Engine) -> None:
    seed_database(engine, sessions=5, messages_per_session=4)
    seed_database(engine, sessions=5, messages_per_session=4)  # same seed, same database
    assert _count(engine, sessions) == 10 and _count(engine, messages) == 40
    with engine.begin() as conn:
        emails = list(conn.execute(sa.select(users.c.email)).scalars())
        assert len(emails) == len(set(emails)) == 2
        assert all(e.endswith("@" + EMAIL_DOMAIN) for e in emails)
        # The database still hands out fresh ids after the seed (PostgreSQL sequences).
        user_id = conn.execute(
            users.insert().values(
                email="new@example.org",
                display_name="New",
                role="student",
                created_at=sa.func.current_timestamp(),
            )
        ).inserted_primary_key[0]
        session_id = conn.execute(sa.select(sessions.c.id).limit(1)).scalar_one()
        message_id = conn.execute(
            messages.insert().values(
                session_id=session_id,
                role="student",
                content="Hello?",
                created_at=sa.func.current_timestamp(),
            )
        ).inserted_primary_key[0]
        assert user_id == 3
        assert message_id == 41


def test_progress_is_reported_from_zero_to_total(engine: sa.Engine) -> None:
    calls: list[tuple[int, int]] = []
    seed_database(
        engine, sessions=7, messages_per_session=2, progress=lambda d, t: calls.append((d, t))
    )
    assert calls[0] == (0, 7) and calls[-1] == (7, 7)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_a_failure_before_commit_leaves_nothing_behind(engine: sa.Engine) -> None:
    def fail_at_the_end(done: int, total: int) -> None:
        if done == total:  # every row is written by now, the commit is next
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        seed_database(engine, sessions=6, messages_per_session=4, progress=fail_at_the_end)
    for table in (users, sessions, messages, vitals):
        assert _count(engine, table) == 0
    assert seed_database(engine, sessions=2, messages_per_session=2).sessions == 2  # still usable


def test_a_database_error_is_translated_and_rolled_back(engine: sa.Engine) -> None:
    # A real failure in the middle of the seed: vitals are written after users, sessions and
    # messages, so a trigger refusing vitals proves the earlier tables are rolled back too.
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql(
                "CREATE TRIGGER no_vitals BEFORE INSERT ON vitals "
                "BEGIN SELECT RAISE(ABORT, 'vitals refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'vitals refused'; END $$"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER no_vitals BEFORE INSERT ON vitals "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )
    with pytest.raises(DatabaseError, match="vitals refused") as caught:
        seed_database(engine, sessions=5, messages_per_session=4)
    assert str(caught.value).startswith("database error on ")
    for table in (users, sessions, messages, vitals):
        assert _count(engine, table) == 0


def test_bad_sizes_and_missing_scenarios_are_usage_errors(sqlite_url: str) -> None:
    eng = create_engine(sqlite_url)
    try:
        with pytest.raises(UsageError, match="at least 1"):
            seed_database(eng, sessions=0)
        with pytest.raises(UsageError, match="0 or more"):
            seed_database(eng, sessions=1, messages_per_session=-1)
        upgrade(eng)  # schema, but no scenarios
        with pytest.raises(UsageError, match="no scenarios") as caught:
            seed_database(eng, sessions=1)
        assert caught.value.hint == "run `emrops sim init-db` first"
    finally:
        eng.dispose()


def test_cli_seed_prints_the_counts_as_json(cli, db_url: str) -> None:
    result = cli(
        "sim", "seed", "--db", db_url, "--sessions", "20", "--messages-per-session", "6", "--json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["sessions"] == 20 and data["messages"] == 120 and data["users"] == 2
    assert data["vitals"] >= 60 and data["engine"] in ("sqlite", "postgresql")
    eng = create_engine(db_url)
    try:
        assert _count(eng, messages) == 120
    finally:
        eng.dispose()


def test_cli_seed_refuses_zero_sessions(cli, sqlite_url: str) -> None:
    result = cli("sim", "seed", "--db", sqlite_url, "--sessions", "0")
    assert result.exit_code == 2
    assert "--sessions" in result.stderr
    assert result.stdout == ""


def test_pg_seed_is_utc_whatever_the_connection_time_zone(pg_url: str, tmp_path: Path) -> None:
    init_db(pg_url)
    # An engine made elsewhere, in another time zone, with one pooled connection.
    eng = sa.create_engine(
        pg_url, connect_args={"options": "-c timezone=Asia/Tokyo"}, pool_size=1, max_overflow=0
    )
    try:
        seed_database(eng, sessions=3, messages_per_session=2, seed=4)
        with eng.connect() as conn:  # the very connection the seed used: clean and usable
            assert conn.exec_driver_sql("SHOW timezone").scalar() == "Asia/Tokyo"
            assert conn.exec_driver_sql("SELECT count(*) FROM messages").scalar() == 6
    finally:
        eng.dispose()
    lite = init_db(f"sqlite:///{tmp_path / 'lite.db'}")
    _seed(lite, sessions=3, messages_per_session=2, seed=4)
    assert _dump(pg_url) == _dump(lite)
    low = min(row[4] for row in _dump(pg_url)["sessions"])
    assert SEED_EPOCH - timedelta(days=WINDOW_DAYS) <= low < SEED_EPOCH


def test_cli_seed_with_base_time_is_byte_identical(cli, tmp_path: Path) -> None:
    import shutil
    import subprocess

    sqlite3_cli = shutil.which("sqlite3")
    assert sqlite3_cli, "the sqlite3 CLI is installed by `make test`"
    dumps = []
    for name in ("a.db", "b.db"):
        path = tmp_path / name
        result = cli(
            "sim", "seed", "--db", f"sqlite:///{path}", "--sessions", "6",
            "--messages-per-session", "4", "--seed", "7",
            "--base-time", "2026-01-01T00:00:00Z",
        )  # fmt: skip
        assert result.exit_code == 0, result.stderr
        dumps.append(subprocess.run([sqlite3_cli, str(path), ".dump"], capture_output=True,
                                    check=True).stdout)  # fmt: skip
        time.sleep(0.01)  # a different wall clock for each run
    assert dumps[0] == dumps[1]
    assert b"2025-12-" in dumps[0] and b"2026-01-01 00:00:00.000000" in dumps[0]  # scenarios
    other = tmp_path / "c.db"
    assert cli("sim", "seed", "--db", f"sqlite:///{other}", "--sessions", "6",
               "--messages-per-session", "4", "--seed", "8",
               "--base-time", "2026-01-01T00:00:00Z").exit_code == 0  # fmt: skip
    conn = sqlite3.connect(other)
    ids_c = {r[0] for r in conn.execute("SELECT id FROM sessions")}
    conn.close()
    conn = sqlite3.connect(tmp_path / "a.db")
    ids_a = {r[0] for r in conn.execute("SELECT id FROM sessions")}
    conn.close()
    assert ids_a.isdisjoint(ids_c)  # UUIDs come from the seed


def test_cli_seed_without_base_time_is_relative_to_now(cli, sqlite_url: str) -> None:
    result = cli("sim", "seed", "--db", sqlite_url, "--sessions", "5", "--seed", "7")
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    newest = max(r[0] for r in conn.execute("SELECT started_at FROM sessions"))
    conn.close()
    started = datetime.fromisoformat(newest).replace(tzinfo=UTC)
    assert datetime.now(UTC) - timedelta(days=WINDOW_DAYS) <= started <= datetime.now(UTC)


def test_cli_seed_refuses_a_seeded_database_without_append(cli, sqlite_url: str) -> None:
    assert cli("sim", "seed", "--db", sqlite_url, "--sessions", "3").exit_code == 0
    again = cli("sim", "seed", "--db", sqlite_url, "--sessions", "3")
    assert again.exit_code == 2
    lines = again.stderr.splitlines()
    assert lines[0] == "Error: the database already holds 3 session(s)"
    assert lines[1].startswith("Try: pass --append to add more")
    appended = cli("sim", "seed", "--db", sqlite_url, "--sessions", "3", "--append", "--json")
    assert appended.exit_code == 0, appended.stderr
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 6
    conn.close()


def test_cli_seed_rejects_a_base_time_without_zone(cli, sqlite_url: str) -> None:
    result = cli("sim", "seed", "--db", sqlite_url, "--sessions", "1",
                 "--base-time", "2026-01-01T00:00:00")  # fmt: skip
    assert result.exit_code == 2
    assert "has no time zone" in result.stderr
