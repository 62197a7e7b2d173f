"""A throwaway PostgreSQL 15 cluster that really checks passwords (scram-sha-256 on TCP).

The shared server on 127.0.0.1:5432 trusts every local connection, so nothing about a
password or token can fail there. This cluster is started once per test session as the
``postgres`` OS user on a free port and removed at the end. Import the ``scram_pg``
fixture into a test module to use it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

PG_BIN = Path(os.environ.get("EMROPS_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class ScramCluster:
    port: int
    superuser_password: str

    @property
    def admin_dsn(self) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres "
            f"password={self.superuser_password}"
        )

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5)

    def create_role(self, password: str) -> str:
        """A LOGIN role with ``password`` and its own database of the same name."""
        name = f"app_{uuid.uuid4().hex[:10]}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(name), sql.Identifier(name)
                )
            )
        return name

    def set_password(self, role: str, password: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(args: list[str]) -> subprocess.CompletedProcess[str]:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def scram_pg() -> Iterator[ScramCluster]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail(f"no initdb in {PG_BIN}: install postgresql-15 or set EMROPS_TEST_PG_BIN")
    folder = Path(tempfile.mkdtemp(prefix="emrops-scram-"))
    data = folder / "data"
    pwfile = folder / "pw"
    password = secrets.token_urlsafe(18)
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        ids = pwd.getpwnam("postgres")
        for path in (folder, pwfile):
            os.chown(path, ids.pw_uid, ids.pw_gid)
    init = _as_postgres(
        [
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        ]
    )
    assert init.returncode == 0, init.stderr
    port = _free_port()
    opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={folder}"
    start = _as_postgres(
        [str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(folder / "log"), "-w"]
        + ["start"]
    )
    assert start.returncode == 0, start.stderr + start.stdout
    try:
        yield ScramCluster(port=port, superuser_password=password)
    finally:
        _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(folder, ignore_errors=True)
