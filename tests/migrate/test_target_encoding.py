"""A target database that is not UTF-8.

The copy sends SQLite's text as UTF-8 bytes. A LATIN1 database took them as Latin-1
characters without a word ('héllo' arrived as 'hÃ©llo', six characters; '日本語' as nine),
and `run` and `verify` both exited 0: the stored bytes were the source's, so the checksums
matched. An SQL_ASCII database ended `run` in "unexpected SyntaxError". Both are refused
now, before anything is created, and so are `sim init-db`/`serve` on such a database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PG_HOST
from tests.migrate.conftest import script_db

ADMIN = f"host={PG_HOST.split(':')[0]} user=postgres dbname=postgres"


@pytest.fixture(params=["LATIN1", "SQL_ASCII"])
def legacy_db(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"emrops_enc_{request.param.lower()}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Identifier(name), sql.Literal(request.param))
        )
    yield name
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def test_migrate_refuses_a_target_that_cannot_hold_the_text(
    cli, tmp_path: Path, legacy_db: str
) -> None:
    source = script_db(
        tmp_path / "u.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT); "
        "INSERT INTO t (s) VALUES ('héllo'), ('日本語');",
    )
    url = f"postgresql+psycopg://postgres@{PG_HOST}/{legacy_db}"
    for command in ("plan", "run"):
        result = cli("migrate-db", command, "--from", source, "--to", url)
        # before (LATIN1): exit 0 with mojibake stored; (SQL_ASCII): unexpected SyntaxError
        assert result.exit_code == 1, (command, result.stderr)
        assert f"target database {legacy_db} uses the encoding" in result.stderr
        assert "createdb -E UTF8 -T template0" in result.stderr
        assert "unexpected" not in result.stderr
    with psycopg.connect(f"{ADMIN.rsplit('=', 1)[0]}={legacy_db}") as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)


def test_sim_init_db_refuses_it(cli, legacy_db: str) -> None:
    result = cli("sim", "init-db", "--db", f"postgresql+psycopg://postgres@{PG_HOST}/{legacy_db}")
    assert result.exit_code == 1, result.stderr
    assert "EMRsim's text is Unicode" in result.stderr
