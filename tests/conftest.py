"""Shared fixtures: real SQLite files, real PostgreSQL databases, the CLI runner.

Tests that need PostgreSQL fail (never skip) when it is not reachable on
127.0.0.1:5432: `make test` starts it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from emrops.cli.main import app

PG_ADMIN_DSN = os.environ.get(
    "EMROPS_TEST_PG_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
)
PG_HOST = os.environ.get("EMROPS_TEST_PG_HOST", "127.0.0.1:5432")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No EMROPS_* variable or config file from the developer's machine leaks into a test."""
    for key in list(os.environ):
        if key.startswith("EMROPS_") and key != "EMROPS_TEST_PG_DSN":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):
    """Invoke the root app: cli("sim", "init-db", "--db", url) -> Result.

    stdout and stderr are kept apart, as a user sees them.
    """

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None):
        return runner.invoke(app, list(args), input=input, env=env)

    return invoke


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'emrsim.db'}"


def _admin_connect() -> psycopg.Connection:
    try:
        return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # fail, never skip: CI must have PostgreSQL
        pytest.fail(f"PostgreSQL is not reachable ({PG_ADMIN_DSN}): {exc}; run `make postgres`")


def create_pg_database(prefix: str = "emrops_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_pg_database(name: str) -> None:
    with _admin_connect() as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    name = create_pg_database()
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}/{name}"
    finally:
        drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'emrsim.db'}"
        return
    name = create_pg_database()
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}/{name}"
    finally:
        drop_pg_database(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port that accepts connections and never answers (the timeout tests' endpoint).

    Connections are held open until the test ends, so a client sees neither a refusal nor
    an EOF: only its own timeout can end the wait."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


def add_unknown_module_table(db: Path, name: str = "vx") -> None:
    """Declare in ``db`` a virtual table of a module no SQLite here loads (as an app that
    registers its own module leaves it): every read of it fails with 'no such module'."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.executescript(
            "PRAGMA writable_schema = ON;"
            "INSERT INTO sqlite_master (type, name, tbl_name, rootpage, sql) VALUES "
            f"('table', '{name}', '{name}', 0, "
            f"'CREATE VIRTUAL TABLE {name} USING appmodule(a, b)');"
            "PRAGMA writable_schema = OFF;"
        )
        conn.commit()
    finally:
        conn.close()


@contextlib.contextmanager
def tmpfs(options: str) -> Iterator[Path]:
    """A tmpfs mounted with ``options`` (e.g. ``size=64k``, ``ro``) at a new folder, unmounted
    and removed afterwards; the test is skipped where mounting is not permitted."""
    mount = Path(tempfile.mkdtemp(prefix="emrops-tmpfs-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()
