"""Each way a PostgreSQL connection fails gets the hint for that cause (real server, real libpq).

Before session 13 every failure after "connection failed:" got "check that PostgreSQL is
running", so a missing database, a missing role or sslmode=require against a server without
SSL sent the user to check a server that was up.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from emrops.db import pghints
from tests.conftest import _admin_connect, create_pg_database, drop_pg_database, free_port


@pytest.fixture
def locked_db() -> Iterator[tuple[str, str]]:
    """A database PUBLIC may not connect to, and a login role without CONNECT on it."""
    name = create_pg_database("emrops_hint")
    role = f"hint_{uuid.uuid4().hex[:8]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'REVOKE CONNECT ON DATABASE "{name}" FROM PUBLIC')
    yield name, role
    drop_pg_database(name)
    with _admin_connect() as conn:
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _cases(locked: tuple[str, str]) -> list[tuple[str, str]]:
    name, role = locked
    return [
        ("postgresql://postgres@127.0.0.1:5432/emrops_no_such_db", "the database does not exist"),
        ("postgresql://emrops_no_such_role@127.0.0.1:5432/postgres", "the user does not exist"),
        (
            "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=require",
            "the server has no SSL",
        ),
        (f"postgresql://{role}@127.0.0.1:5432/{name}", "may not connect to this database"),
        (f"postgresql://postgres@127.0.0.1:{free_port()}/x", "check that PostgreSQL is running"),
        ("postgresql://postgres@emrops-no-such-host.invalid:5432/x", "does not resolve"),
    ]


def test_backup_run_names_the_cause(cli, tmp_path: Path, locked_db) -> None:
    for url, wanted in _cases(locked_db):
        result = cli("backup", "run", "--db", url, "--store", str(tmp_path / "store"))
        assert result.exit_code == 1, (url, result.stderr)
        hint = result.stderr.splitlines()[-1]
        assert hint.startswith("Try: ") and wanted in hint, (url, result.stderr)
        assert "unexpected" not in result.stderr
    assert not any((tmp_path / "store").glob("*/manifest.json"))


def test_migrate_plan_names_the_cause(cli, tmp_path: Path, locked_db) -> None:
    src = tmp_path / "app.db"
    import sqlite3

    with sqlite3.connect(src) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    for url, wanted in _cases(locked_db):
        result = cli("migrate-db", "plan", "--from", str(src), "--to", url)
        assert result.exit_code == 1, (url, result.stderr)
        hint = result.stderr.splitlines()[-1]
        assert hint.startswith("Try: ") and wanted in hint, (url, result.stderr)
        if "database does not exist" in wanted or "in the URL" in hint:
            assert "--to" in hint  # names the flag the URL came from


def test_messages_not_about_connecting_get_no_connection_hint() -> None:
    # A statement's error must not be read as a connection failure.
    assert pghints.connect_hint('relation "database_log" does not exist') is None
    assert pghints.connect_hint("file is not a database") is None
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect("postgresql://postgres@127.0.0.1:5432/emrops_no_such_db")
    assert "createdb" in (pghints.connect_hint(str(info.value), "--db") or "")


@pytest.mark.parametrize(
    "fatal",
    ['password authentication failed for user "ops"', "fe_sendauth: no password supplied"],
)
def test_an_azure_server_refusing_a_password_points_to_entra_id(fatal: str) -> None:
    # libpq's text for an Azure Database for PostgreSQL server with password sign-in off
    # (no Azure here: the message is the one libpq builds, host included)
    message = (
        'connection failed: connection to server at "emrsim-prod.postgres.database.azure.com" '
        f"(10.0.2.4), port 5432 failed: FATAL:  {fatal}"
    )
    hint = pghints.connect_hint(message, "--db") or ""
    assert "?auth=azure to --db" in hint and "db_auth" in hint, hint
    # any other host keeps the password hint
    other = pghints.connect_hint(message.replace(".postgres.database.azure.com", ".internal"))
    assert other is not None and "auth=azure" not in other
