"""A statement the server cancels (a statement_timeout the user set for emrops, in PGOPTIONS
or the URL) outside the COPY, which names it itself. In plan's trial of the schema it was
recorded as the table's failure with the advice to write a cast rule (plan exit 3); elsewhere
it ended in "unexpected QueryCanceled". Made deterministic with an event trigger that makes
every DDL statement on the target take 300 ms, against a 100 ms statement_timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_HOST, create_pg_database, drop_pg_database
from tests.migrate.conftest import script_db


@pytest.fixture
def slow_ddl_db() -> Iterator[str]:
    name = create_pg_database()
    try:
        with psycopg.connect(f"postgresql://postgres@{PG_HOST}/{name}", autocommit=True) as c:
            c.execute(
                "CREATE FUNCTION slow_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(0.3); END $$;"
                "CREATE EVENT TRIGGER slow ON ddl_command_start EXECUTE FUNCTION slow_ddl()"
            )
        yield f"postgresql+psycopg://postgres@{PG_HOST}/{name}"
    finally:
        drop_pg_database(name)


@pytest.mark.parametrize("command", ["plan", "run"])
def test_a_cancelled_statement_is_named_not_blamed_on_the_schema(
    cli, tmp_path: Path, slow_ddl_db: str, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    source = script_db(
        tmp_path / "s.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'a');",
    )
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=100")
    result = cli("migrate-db", command, "--from", source, "--to", slow_ddl_db)
    # before: plan exit 3 "1 statement(s) fail on the target; first: table t: canceling
    # statement due to statement timeout" and "add a cast rule"
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    assert "Error: PostgreSQL cancelled a statement: canceling statement due to statement" in (
        result.stderr
    )
    assert "statement_timeout" in result.stderr and "cast rule" not in result.stderr
    assert "unexpected" not in result.stderr
    monkeypatch.delenv("PGOPTIONS")
    assert cli("migrate-db", "plan", "--from", source, "--to", slow_ddl_db).exit_code == 0
