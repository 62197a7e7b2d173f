"""Jobs sized to the target's connection room, not only to the cores: a machine with more cores
than this one (EMROPS_CPUS) against a role or database with a CONNECTION LIMIT, as on a small
managed server or beside an app's pool. Before, the run failed half-way ("too many connections
for role") with a hint to check that PostgreSQL is running."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN_DSN, PG_HOST, create_pg_database, drop_pg_database

MANY_CORES = {"EMROPS_CPUS": "16"}  # default jobs: min(16, 8) = 8


@pytest.fixture
def limited() -> Iterator[tuple[str, str, str]]:
    """(target URL, database, role): a fresh database owned by a non-superuser role (PostgreSQL
    exempts superusers from connection limits)."""
    name = create_pg_database()
    role = f"lim_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        admin.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    try:
        yield f"postgresql+psycopg://{role}@{PG_HOST}/{name}", name, role
    finally:
        drop_pg_database(name)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def _admin(sql: str, dbname: str = "postgres") -> None:
    with psycopg.connect(PG_ADMIN_DSN, dbname=dbname, autocommit=True) as admin:
        admin.execute(sql)


def _source(tmp_path: Path, tables: int = 5, rows: int = 2000) -> Path:
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        for t in range(tables):
            conn.execute(f"CREATE TABLE t{t} (id INTEGER PRIMARY KEY, v TEXT, n REAL)")
            conn.executemany(
                f"INSERT INTO t{t} VALUES (?, ?, ?)",
                [(i, f"row {i} of t{t}", i / 7) for i in range(1, rows + 1)],
            )
    conn.close()
    return path


def _target_counts(name: str, tables: int) -> list[int]:
    with psycopg.connect(PG_ADMIN_DSN, dbname=name) as conn:
        return [conn.execute(f"SELECT count(*) FROM t{t}").fetchone()[0] for t in range(tables)]


def test_run_fits_its_jobs_to_the_role_connection_limit(cli, tmp_path: Path, limited) -> None:
    target, name, role = limited
    _admin(f'ALTER ROLE "{role}" CONNECTION LIMIT 3')
    src = _source(tmp_path)
    result = cli(
        "migrate-db", "run", "--from", f"sqlite:///{src}", "--to", target, "--json", env=MANY_CORES
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["verify"]["problems"] == []
    note = next(n for n in doc["notes"] if "jobs instead of" in n)
    assert note.startswith("2 jobs instead of 8")
    assert "CONNECTION LIMIT 3" in note
    assert _target_counts(name, 5) == [2000] * 5
    # the standalone verify fits too (its default jobs are the cores as well)
    again = cli(
        "migrate-db", "verify", "--from", f"sqlite:///{src}", "--to", target, env=MANY_CORES
    )
    assert again.exit_code == 0, again.stderr


def test_run_with_no_room_is_refused_before_creating_anything(cli, tmp_path: Path, limited) -> None:
    target, name, role = limited
    _admin(f'ALTER ROLE "{role}" CONNECTION LIMIT 1')
    src = _source(tmp_path, tables=1, rows=10)
    result = cli("migrate-db", "run", "--from", f"sqlite:///{src}", "--to", target)
    assert result.exit_code == 1
    assert "unexpected" not in result.stderr
    assert "room for 1 connection(s) from this role" in result.stderr
    assert "CONNECTION LIMIT 1" in result.stderr and "needs at least 2" in result.stderr
    assert "raise the" in result.stderr  # the hint
    with psycopg.connect(PG_ADMIN_DSN, dbname=name) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert left.fetchone()[0] == 0  # no journal, no table


def test_database_limit_counts_the_connections_others_hold(cli, tmp_path: Path, limited) -> None:
    """The database's CONNECTION LIMIT less what the app already holds: two of four taken
    leaves room for one job and the journal."""
    target, name, _role = limited
    _admin(f'ALTER DATABASE "{name}" CONNECTION LIMIT 4', name)
    src = _source(tmp_path, tables=3, rows=500)
    held = [psycopg.connect(target.replace("+psycopg", "")) for _ in range(2)]
    try:
        result = cli(
            "migrate-db",
            "run",
            "--from",
            f"sqlite:///{src}",
            "--to",
            target,
            "--jobs",
            "4",
            "--json",
        )
    finally:
        for conn in held:
            conn.close()
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    note = next(n for n in doc["notes"] if "jobs instead of" in n)
    assert note.startswith("1 jobs instead of 4")
    assert "the database's CONNECTION LIMIT 4, 2 others open" in note
    assert _target_counts(name, 3) == [500] * 3


def test_verify_of_big_tables_stays_within_the_jobs(cli, tmp_path: Path, limited) -> None:
    """Without parallel workers, verification sums a big table over key ranges on several
    connections; with several such tables at once that was jobs x jobs connections (16 for 4
    jobs, past a limit of 5). Now at most the jobs in all."""
    target, name, role = limited
    src = _source(tmp_path, tables=2, rows=100_000)
    _admin(f'ALTER DATABASE "{name}" SET max_parallel_workers_per_gather = 0', name)
    _admin(f'ALTER ROLE "{role}" CONNECTION LIMIT 5')
    env = {"EMROPS_CPUS": "4"}
    result = cli("migrate-db", "run", "--from", f"sqlite:///{src}", "--to", target, env=env)
    assert result.exit_code == 0, result.stderr
    again = cli("migrate-db", "verify", "--from", f"sqlite:///{src}", "--to", target, env=env)
    assert again.exit_code == 0, again.stderr
    assert "too many connections" not in again.stderr


def test_too_many_connections_gets_its_own_hint(cli, tmp_path: Path, limited) -> None:
    """A limit reached by others after the start (here: at the first connection, by a plan)
    is named as such, not as a server that is down."""
    target, _name, role = limited
    _admin(f'ALTER ROLE "{role}" CONNECTION LIMIT 1')
    src = _source(tmp_path, tables=1, rows=10)
    held = psycopg.connect(target.replace("+psycopg", ""))
    try:
        result = cli("migrate-db", "plan", "--from", f"sqlite:///{src}", "--to", target)
    finally:
        held.close()
    assert result.exit_code == 1
    assert "too many connections" in result.stderr
    assert "connection limit is reached" in result.stderr
    assert "check that PostgreSQL is running" not in result.stderr
