"""provision db-role: the managed identity's database role, checked on the real PostgreSQL."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PG_ADMIN_DSN


@pytest.fixture
def schema_db(cli, pg_url: str) -> str:
    assert cli("sim", "init-db", "--db", pg_url).exit_code == 0
    return pg_url


@pytest.fixture
def role() -> str:
    name = f"emrsim-test-app-id-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _apply_grants(db_url: str, role: str, database: str) -> None:
    from emrops.provision.dbrole import grant_sql

    statements = [
        line
        for line in grant_sql(role, database).splitlines()
        if line and not line.startswith("--") and "pgaadauth" not in line  # Azure-only
    ]
    dsn = db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def test_missing_role_exits_3_naming_it(cli, schema_db):
    result = cli("provision", "db-role", "no-such-identity", "--db", schema_db)
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "Error: role no-such-identity is not ready: role 'no-such-identity' does not exist"
    )
    assert "emrops provision db-role no-such-identity --sql" in result.stderr


def test_role_without_grants_then_with_them(cli, role, schema_db):  # role outlives the db
    result = cli("provision", "db-role", role, "--db", schema_db, "--json")
    assert result.exit_code == 3
    data = json.loads(result.stdout)
    assert data["exists"] is True and data["can_login"] is True and data["ok"] is False
    assert "CREATE on schema public" in data["missing"]
    assert "INSERT on messages" in data["missing"]

    _apply_grants(schema_db, role, data["database"])
    result = cli("provision", "db-role", role, "--db", schema_db, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["missing"] == []


def test_sql_quotes_the_role_and_uses_pgaadauth(cli):
    result = cli("provision", "db-role", 'odd"name', "--sql")
    assert result.exit_code == 0
    assert "SELECT * FROM pgaadauth_create_principal('odd\"name', false, false);" in result.stdout
    assert 'GRANT CONNECT ON DATABASE "emrsim" TO "odd""name";' in result.stdout
