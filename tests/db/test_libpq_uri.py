"""The libpq URIs handed to psycopg and to pg_dump/pg_restore/psql, and the URL cutover writes.

`URL.set(password=None)` keeps the password (None means "unchanged" to SQLAlchemy), so the
"URI without the password" carried it: pg_dump ran with the password on its command line,
readable by every local user in `ps`, and cutover wrote it into the config file. SQLAlchemy's
rendering also left a space in a database name, which libpq refuses, so migrate-db could
not reach a database named "my db"."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from emrops.db.azure_auth import libpq
from emrops.migrate.online import config_url, write_db_url
from tests.conftest import PG_HOST
from tests.migrate.conftest import script_db

SECRET = "Leak3d-pw@x"


@pytest.mark.parametrize(
    ("url", "uri"),
    [
        (
            "postgresql+psycopg://us%40er:Leak3d-pw%40x@db.example:5432/my%20db%25x?sslmode=require",
            "postgresql://us%40er@db.example:5432/my%20db%25x?sslmode=require",
        ),
        ("postgresql+psycopg://app@[::1]/emrsim", "postgresql://app@[::1]/emrsim"),
        (
            "postgresql+psycopg://app:Leak3d-pw%40x@/emrsim?host=/run/postgresql",
            "postgresql://app@/emrsim?host=%2Frun%2Fpostgresql",
        ),
    ],
)
def test_the_uri_carries_no_password(url: str, uri: str) -> None:
    got, extra = libpq(make_url(url))
    assert got == uri
    assert SECRET not in got
    if "Leak3d" in url:
        assert extra["password"] == SECRET


def test_cutover_writes_no_password(tmp_path: Path) -> None:
    clean = config_url("postgresql+psycopg://app:Leak3d-pw%40x@db.example/my%22db")
    assert "Leak3d" not in clean
    config = tmp_path / "emrops.toml"
    config.write_text('[schedule]\nbackup = "0 3 * * *"\n')
    write_db_url(config, clean)
    # before: db_url = "...my"db" broke the file's TOML
    loaded = tomllib.loads(config.read_text())
    assert make_url(loaded["db_url"]).database == 'my"db'
    assert loaded["schedule"] == {"backup": "0 3 * * *"}


@pytest.fixture
def spaced_db() -> str:
    name = 'my db%x "q"'
    admin = f"host={PG_HOST.split(':')[0]} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name.replace(chr(34), chr(34) * 2)}"')
        conn.execute(f'CREATE DATABASE "{name.replace(chr(34), chr(34) * 2)}"')
    yield name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name.replace(chr(34), chr(34) * 2)}" WITH (FORCE)')


def test_migrate_and_pg_dump_reach_a_database_named_with_spaces(
    cli, tmp_path: Path, spaced_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import quote

    password, database = quote(SECRET, safe=""), quote(spaced_db, safe="")
    url = f"postgresql+psycopg://postgres:{password}@{PG_HOST}/{database}"
    source = script_db(
        tmp_path / "s.db", "CREATE TABLE t (id INTEGER PRIMARY KEY); INSERT INTO t VALUES (1);"
    )
    run = cli("migrate-db", "run", "--from", source, "--to", url)
    # before: exit 2, 'unexpected spaces found in "my db%25x ..."'
    assert run.exit_code == 0, run.stderr
    # pg_dump behind a wrapper that records its command line
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    real = next(
        Path(d) / "pg_dump"
        for d in os.environ["PATH"].split(os.pathsep)
        if (Path(d) / "pg_dump").exists()
    )
    wrapper = bin_dir / "pg_dump"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    made = cli("backup", "run", "--db", url, "--store", str(tmp_path / "store"))
    assert made.exit_code == 0, made.stderr
    argv = log.read_text()
    assert "-d postgresql://postgres@" in argv
    # before: -d postgresql://postgres:Leak3d-pw%40x@... (in `ps` for everyone)
    assert "Leak3d" not in argv
