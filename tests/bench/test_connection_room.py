"""`benchmark run` refuses, before the first cell, a client count the server has no room for
(the role's CONNECTION LIMIT here; max_connections and the database's limit alike). Before,
only max_connections was checked, and the cell with the most clients failed half-way through
the benchmark with "too many connections for role"."""

from __future__ import annotations

import uuid

import psycopg

from tests.conftest import PG_ADMIN_DSN, PG_HOST

TINY = ["--duration", "0.5s", "--warmup", "0s", "--repeat", "1", "--sessions", "10"]


def test_clients_beyond_the_role_limit_are_refused_up_front(cli) -> None:
    role = f"limb_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN CREATEDB CONNECTION LIMIT 6')
    url = f"postgresql+psycopg://{role}@{PG_HOST}/postgres"
    try:
        refused = cli("benchmark", "run", "--db", url, "--clients", "1,8", *TINY)
        assert refused.exit_code == 2, refused.stderr
        assert "8 clients need 9 connections" in refused.stderr
        assert "room for 6 from this role" in refused.stderr
        assert "CONNECTION LIMIT 6" in refused.stderr
        assert "use at most 5 clients" in refused.stderr
        assert "cell 1/" not in refused.stderr  # refused before any cell ran
        fits = cli("benchmark", "run", "--db", url, "--clients", "1,5", *TINY, "--json")
        assert fits.exit_code == 0, fits.stderr
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            owned = admin.execute(
                "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE r.rolname = %s",
                (role,),
            ).fetchall()
            for (name,) in owned:
                admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert owned == []  # the scratch databases were removed in both runs
