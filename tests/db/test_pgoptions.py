"""PGOPTIONS reaches emrops's own PostgreSQL connections. They passed libpq ``options``
alone, which replaces PGOPTIONS, so a search_path, statement_timeout or lock_timeout a user
exported for every client was ignored by emrops (while pg_dump and psql honoured it). Now the
user's settings come first and emrops's own (UTC, ...) after them, so its own still win."""

from __future__ import annotations

import pytest

from emrops.db.engine import create_engine
from emrops.migrate import journal


def test_pgoptions_reach_both_kinds_of_connection(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=4321 -c TimeZone=Asia/Tokyo")
    with journal.connect(pg_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
        ).fetchone()
    # before: ('0', 'UTC')
    assert row == ("4321ms", "UTC")
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            got = conn.exec_driver_sql(
                "SELECT current_setting('statement_timeout'), current_setting('TimeZone')"
            ).one()
    finally:
        engine.dispose()
    assert tuple(got) == ("4321ms", "UTC")


def test_the_urls_own_options_are_kept(pg_url: str) -> None:
    url = f"{pg_url}?options=-c%20statement_timeout%3D2345"
    with journal.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('statement_timeout')").fetchone()
    # before: ('0',): the URL's options were replaced by emrops's own
    assert row == ("2345ms",)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            got = conn.exec_driver_sql("SELECT current_setting('statement_timeout')").scalar()
    finally:
        engine.dispose()
    assert got == "2345ms"


def test_a_migration_aimed_at_a_schema_lands_there(cli, tmp_path, pg_url: str) -> None:
    import psycopg

    from tests.migrate.conftest import script_db

    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA app")
    source = script_db(
        tmp_path / "s.db", "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (7);"
    )
    url = f"{pg_url}?options=-c%20search_path%3Dapp"
    assert cli("migrate-db", "run", "--from", source, "--to", url).exit_code == 0
    with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
        where = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 't'"
        ).fetchall()
    # before: [('public',)]
    assert where == [("app",)]
