"""A target database with standard_conforming_strings off (set for an old app). Every
backslash in the SQL migrate-db sends was then an escape: a view's '\\t' became a tab, a
CHECK's 'c:\\temp' became 'c:<tab>emp', a default 'a\\nb' a line break, and run and verify
both exited 0. The migration's connections now set it on for themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.conftest import PG_HOST
from tests.migrate.conftest import script_db

ADMIN = f"host={PG_HOST.split(':')[0]} user=postgres dbname=postgres"
SCHEMA = r"""
CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT DEFAULT 'a\nb', p TEXT CHECK (p <> 'c:\temp'));
CREATE VIEW v AS SELECT id, s || '\t' AS st FROM t;
INSERT INTO t (id, p) VALUES (1, 'x');
"""


def _database_with(name: str, setting: str) -> Iterator[str]:
    """A fresh database ``name`` with ``ALTER DATABASE ... SET <setting>``; dropped after."""
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET ").format(sql.Identifier(name)) + sql.SQL(setting)
        )
    yield name
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def old_style_db() -> Iterator[str]:
    yield from _database_with("emrops_scs_off", "standard_conforming_strings = off")


def test_backslashes_stay_backslashes(cli, tmp_path: Path, old_style_db: str) -> None:
    source = script_db(tmp_path / "b.db", SCHEMA)
    url = f"postgresql+psycopg://postgres@{PG_HOST}/{old_style_db}"
    result = cli("migrate-db", "run", "--from", source, "--to", url)
    assert result.exit_code == 0, result.stderr
    dsn = ADMIN.replace("dbname=postgres", f"dbname={old_style_db}")
    with psycopg.connect(dsn, options="-c standard_conforming_strings=on") as conn:
        view = conn.execute("SELECT st FROM v").fetchone()
        check = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 't'::regclass AND contype = 'c'"
        ).fetchone()
        conn.execute("INSERT INTO t (id, p) VALUES (2, 'y')")
        default = conn.execute("SELECT s FROM t WHERE id = 2").fetchone()
    # before: 'a\nb' then a tab, 'c:<tab>emp', 'a<line break>b'
    assert view == ("a\\nb\\t",)
    assert check is not None and "'c:\\temp'" in check[0]
    assert default == ("a\\nb",)


@pytest.fixture
def read_only_db() -> Iterator[str]:
    yield from _database_with("emrops_read_only", "default_transaction_read_only = on")


def test_a_read_only_target_is_named_as_such(cli, tmp_path: Path, read_only_db: str) -> None:
    source = script_db(tmp_path / "r.db", "CREATE TABLE t (id INTEGER PRIMARY KEY);")
    url = f"postgresql+psycopg://postgres@{PG_HOST}/{read_only_db}"
    for command in ("plan", "run"):
        result = cli("migrate-db", command, "--from", source, "--to", url)
        # before: plan hinted at a missing CREATE privilege; run said
        # "unexpected ReadOnlySqlTransaction"
        assert result.exit_code == 1, (command, result.stderr)
        assert "unexpected" not in result.stderr
        assert f"target database {read_only_db} is read-only" in result.stderr
        assert "default_transaction_read_only = off" in result.stderr


@pytest.fixture
def timeout_db() -> Iterator[str]:
    yield from _database_with("emrops_app_timeout", "statement_timeout = '20ms'")


def _big_source(tmp_path: Path) -> str:
    import sqlite3

    path = tmp_path / "big.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n REAL)")
    conn.executemany(
        "INSERT INTO t (v, n) VALUES (?, ?)", ((f"v{i}" * 10, i / 3) for i in range(150_000))
    )
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_the_apps_statement_timeout_is_not_the_migrations(
    cli, tmp_path: Path, timeout_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _big_source(tmp_path)
    url = f"postgresql+psycopg://postgres@{PG_HOST}/{timeout_db}"
    run = cli("migrate-db", "run", "--from", source, "--to", url)
    # before: exit 1, "COPY into t failed, row rowid=...: canceling statement due to statement
    # timeout" with a hint that the connection was lost
    assert run.exit_code == 0, run.stderr
    cli("migrate-db", "rollback", "--to", url, "--yes")
    # a timeout the user sets for emrops itself is theirs: it applies, and is named
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=20")
    again = cli("migrate-db", "run", "--from", source, "--to", url)
    assert again.exit_code == 1, again.stderr
    # the COPY, or (on a loaded machine) a planning statement before it, is the one cancelled
    assert (
        "PostgreSQL cancelled the COPY" in again.stderr
        or "PostgreSQL cancelled a statement" in again.stderr
    ), again.stderr
    assert "unexpected" not in again.stderr
    assert (
        "row rowid=" not in again.stderr and "connection to PostgreSQL was lost" not in again.stderr
    )
