"""`sim serve` on PostgreSQL fits its connection pools to the server's room: each worker kept
up to 30 connections whatever the server allowed, so under load on a role with a CONNECTION
LIMIT (as on a small managed server) requests past the limit failed with 503s."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import psycopg
import pytest

from tests.conftest import PG_ADMIN_DSN, PG_HOST, create_pg_database, drop_pg_database
from tests.sim.conftest import init_db

LIMIT = 8


@pytest.fixture
def limited_db() -> Iterator[tuple[str, str]]:
    """(URL as a non-superuser role with CONNECTION LIMIT 8, role): superusers are exempt."""
    name = create_pg_database()
    role = f"simlim_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {LIMIT}')
        admin.execute(f'ALTER DATABASE "{name}" OWNER TO "{role}"')
    url = f"postgresql+psycopg://{role}@{PG_HOST}/{name}"
    try:
        yield init_db(url), role
    finally:
        drop_pg_database(name)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def _connections(role: str) -> int:
    with psycopg.connect(PG_ADMIN_DSN) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", (role,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_two_workers_under_load_stay_within_the_role_limit(start_server, limited_db) -> None:
    url, role = limited_db
    server = start_server("--db", url, "--workers", "2")
    with server.http() as http:
        response = http.post("/api/sessions", json={"scenario_id": 1})
        assert response.status_code == 201, response.text
        sid = response.json()["id"]

    def post(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            return http.post(
                f"/api/sessions/{sid}/messages", json={"content": f"message {i}"}
            ).status_code

    with ThreadPoolExecutor(max_workers=48) as pool:
        codes = list(pool.map(post, range(120)))
    assert codes.count(201) == len(codes), sorted(set(codes))
    assert _connections(role) <= LIMIT
    with server.http() as http:
        items = http.get(f"/api/sessions/{sid}/messages", params={"limit": 500}).json()["items"]
    assert len(items) == 2 * len(codes)  # each message and its reply, none lost
    assert "2 pool connection(s) per worker instead of 30" in server.log()
    assert server.stop() == 0


def test_more_workers_than_room_is_refused_at_start(cli, limited_db) -> None:
    url, role = limited_db
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 2')
    result = cli("sim", "serve", "--db", url, "--workers", "3", "--port", "0")
    assert result.exit_code == 1, result.stderr
    assert "3 worker(s) need at least 3 each" in result.stderr
    assert "CONNECTION LIMIT 2" in result.stderr
    assert "run fewer --workers" in result.stderr
