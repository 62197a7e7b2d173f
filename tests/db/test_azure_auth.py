"""db_auth=azure: Entra ID tokens as PostgreSQL passwords, against a cluster that checks them.

The credential is a real azure-core TokenCredential (the protocol) handing out rotating
tokens; the throwaway scram-sha-256 cluster (tests/scram_pg.py) sets a role's password to
the current token, so a wrong or stale token is refused like Azure would refuse it.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from emrops.db import azure_auth
from emrops.db.engine import create_engine, parse_db_url
from emrops.errors import DatabaseError
from tests.scram_pg import PG_BIN, ScramCluster, scram_pg  # noqa: F401


@dataclass
class Token:
    token: str
    expires_on: int


class RotatingCredential:
    """Issues a fresh token when asked after the current one expired."""

    def __init__(self, ttl: int = 3600):
        self.ttl = ttl
        self.scopes: list[tuple[str, ...]] = []
        self.current = self._new()

    def _new(self) -> Token:
        return Token("eyJ0eXAi." + secrets.token_urlsafe(24), int(time.time()) + self.ttl)

    def get_token(self, *scopes: str, **_kwargs: object) -> Token:
        self.scopes.append(scopes)
        if self.current.expires_on <= time.time():
            self.current = self._new()
        return self.current

    def expire(self) -> None:
        """The current token reaches its expiry now (the source must replace it)."""
        self.current.expires_on = int(time.time()) - 1


@pytest.fixture
def credential() -> Iterator[RotatingCredential]:
    cred = RotatingCredential()
    azure_auth.use_credential(cred, margin=60)
    try:
        yield cred
    finally:
        azure_auth.use_credential(None)


@pytest.fixture
def role(scram_pg: ScramCluster, credential: RotatingCredential) -> str:  # noqa: F811
    return scram_pg.create_role(credential.current.token)


def _url(cluster: ScramCluster, role: str, query: str = "?auth=azure") -> str:
    return f"postgresql+psycopg://{role}@127.0.0.1:{cluster.port}/{role}{query}"


def test_cluster_refuses_a_connection_without_the_token(scram_pg, role):  # noqa: F811
    engine = create_engine(_url(scram_pg, role, ""), pool_size=1, max_overflow=0)
    with pytest.raises(sa.exc.OperationalError, match="password"):
        engine.connect().close()


def test_token_is_the_password_and_is_refreshed_after_expiry(scram_pg, role, credential):  # noqa: F811
    engine = create_engine(_url(scram_pg, role), pool_size=1, max_overflow=0)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == role
        assert conn.exec_driver_sql("SHOW ssl").scalar() == "off"  # loopback: no verify-full
    engine.dispose()
    with engine.connect() as conn:  # a new connection, token still valid: no new fetch
        conn.exec_driver_sql("SELECT 1")
    assert credential.scopes == [(azure_auth.SCOPE,)]
    old = credential.current.token

    credential.expire()
    credential.current = credential._new()
    scram_pg.set_password(role, credential.current.token)
    credential.current.expires_on = int(time.time()) + 3600
    # the pooled connection outlives its token; a new one must log in with the new token
    engine.dispose()
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT current_user").scalar() == role
    assert len(credential.scopes) == 2
    # and the old token really is refused now
    stale = create_engine(
        _url(scram_pg, role, "").replace(f"{role}@", f"{role}:{old}@"), pool_size=1
    )
    with pytest.raises(sa.exc.OperationalError, match="password authentication failed"):
        stale.connect().close()


def test_token_refreshes_before_expiry_within_the_margin(scram_pg, role, credential):  # noqa: F811
    source = azure_auth.token_source()
    first = source.token()
    credential.current.expires_on = int(time.time()) + 30  # inside the 60 s margin
    credential.current = credential._new()
    assert source.token() == credential.current.token != first


def test_credential_failure_is_a_database_error(scram_pg, role):  # noqa: F811
    from azure.core.exceptions import ClientAuthenticationError

    class NoLogin:
        def get_token(self, *scopes: str, **kwargs: object) -> Token:
            raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    azure_auth.use_credential(NoLogin())
    try:
        engine = create_engine(_url(scram_pg, role), pool_size=1)
        with pytest.raises(DatabaseError, match="cannot get an Entra ID token for PostgreSQL"):
            engine.connect().close()
    finally:
        azure_auth.use_credential(None)


def test_pg_dump_gets_the_token_only_through_its_environment(
    cli,
    scram_pg,  # noqa: F811
    role,
    credential,
    tmp_path,
    monkeypatch,
):
    # a pg_dump/pg_dumpall stand-in that records argv and whether PGPASSWORD is set, then
    # runs the real tool: the backup must succeed and argv must not carry the token
    shims = tmp_path / "bin"
    shims.mkdir()
    record = tmp_path / "calls.txt"
    for tool in ("pg_dump", "pg_dumpall"):
        shim = shims / tool
        shim.write_text(
            "#!/bin/sh\n"
            f'printf "%s ARGS=%s PGPASSWORD=%s\\n" {tool} "$*" "${{PGPASSWORD:+set}}" >> {record}\n'
            f'exec {PG_BIN / tool} "$@"\n'
        )
        shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{os.environ['PATH']}")
    token = credential.current.token
    store = tmp_path / "store"
    result = cli(
        "--debug", "backup", "run", "--db", _url(scram_pg, role), "--store", str(store), "--json"
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data
    calls = record.read_text().splitlines()
    assert any(c.startswith("pg_dump ") for c in calls), calls
    for call in calls:
        assert token not in call
        assert "auth=azure" not in call  # stripped before the tool sees the URL
        if "--version" not in call:
            assert call.endswith("PGPASSWORD=set"), call
    assert token not in result.stdout + result.stderr
    for path in store.rglob("*"):
        if path.is_file() and stat.S_ISREG(path.stat().st_mode):
            assert token.encode() not in path.read_bytes(), path


def test_token_never_shown_by_health_json_debug_or_config_show(
    cli,
    scram_pg,  # noqa: F811
    role,
    credential,
    monkeypatch,
    caplog,
):
    caplog.set_level("DEBUG")
    token = credential.current.token
    url = _url(scram_pg, role, "")
    monkeypatch.setenv("EMROPS_DB_URL", url)
    monkeypatch.setenv("EMROPS_DB_AUTH", "azure")
    result = cli("--debug", "health", "--skip", "sim_health", "--skip", "sim_ready", "--json")
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["database"]["ok"] is True, checks["database"]
    assert credential.scopes  # a token was fetched and used
    shown = cli("--debug", "config", "show", "--json")
    assert shown.exit_code == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert "auth=azure" in json.dumps(settings)
    for text in (result.stdout, result.stderr, shown.stdout, shown.stderr, caplog.text):
        assert token not in text


def test_db_auth_setting_adds_auth_to_postgres_urls_only():
    assert azure_auth.with_auth("postgresql+psycopg://u@h/db", "azure") == (
        "postgresql+psycopg://u@h/db?auth=azure"
    )
    assert azure_auth.with_auth("sqlite:///x.db", "azure") == "sqlite:///x.db"
    assert azure_auth.with_auth("postgresql://u@h/db?auth=password", "azure").endswith(
        "?auth=password"
    )
    assert azure_auth.with_auth("postgresql://u@h/db", "password") == "postgresql://u@h/db"


def test_unknown_auth_is_a_usage_error(cli, tmp_path):
    url = "postgresql+psycopg://u@127.0.0.1/db?auth=kerberos"
    result = cli("backup", "run", "--db", url, "--store", str(tmp_path / "s"))
    assert result.exit_code == 2
    assert "unknown auth='kerberos' in the database URL" in result.stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        (None, True),
        ("/var/run/postgresql", True),
        ("128.0.0.1", False),
        ("10.0.0.4", False),
        ("emrsim-pg.postgres.database.azure.com", False),
        ("localhost.example.org", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert azure_auth.is_loopback(host) is loopback


def test_tls_defaults_verify_full_for_azure_and_token_connections(monkeypatch):
    monkeypatch.delenv("PGSSLMODE", raising=False)
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    azure_host = "emrsim-pg.postgres.database.azure.com"
    assert azure_auth.tls_defaults(azure_host, False, {})["sslmode"] == "verify-full"
    assert azure_auth.tls_defaults("10.0.0.4", True, {})["sslmode"] == "verify-full"
    assert Path(azure_auth.tls_defaults("10.0.0.4", True, {})["sslrootcert"]).is_file()
    assert azure_auth.tls_defaults("10.0.0.4", False, {}) == {}  # not Azure, not a token
    assert azure_auth.tls_defaults("127.0.0.1", True, {}) == {}
    assert "sslmode" not in azure_auth.tls_defaults(azure_host, True, {"sslmode": "require"})
    monkeypatch.setenv("PGSSLMODE", "verify-ca")
    assert "sslmode" not in azure_auth.tls_defaults(azure_host, True, {})


def test_libpq_strips_auth_and_carries_password_apart(credential, monkeypatch):
    monkeypatch.delenv("PGSSLMODE", raising=False)
    url = parse_db_url(
        "postgresql+psycopg://app@emrsim-pg.postgres.database.azure.com/emrsim"
        "?auth=azure&application_name=emrops"
    ).url
    uri, extra = azure_auth.libpq(url)
    assert uri == (
        "postgresql://app@emrsim-pg.postgres.database.azure.com/emrsim?application_name=emrops"
    )
    assert extra["password"] == credential.current.token
    assert extra["sslmode"] == "verify-full"
    env = azure_auth.tool_env(extra, base={})
    assert env["PGPASSWORD"] == credential.current.token and env["PGSSLMODE"] == "verify-full"


def test_migrate_db_into_a_token_only_target(cli, scram_pg, role, credential, tmp_path):  # noqa: F811
    """migrate-db's own connections (journal, COPY workers) and its engines all use the token."""
    source = f"sqlite:///{tmp_path / 'app.db'}"
    assert cli("sim", "init-db", "--db", source).exit_code == 0
    seeded = cli("sim", "seed", "--db", source, "--sessions", "3", "--json")
    assert seeded.exit_code == 0, seeded.stderr
    token = credential.current.token
    result = cli("--debug", "migrate-db", "run", "--from", source, "--to", _url(scram_pg, role),
                 "--jobs", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr[-3000:]
    assert token not in result.stdout + result.stderr
    admin_dsn = scram_pg.admin_dsn.replace("dbname=postgres", f"dbname={role}")
    import psycopg

    with psycopg.connect(admin_dsn) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 3


def test_sim_server_pool_and_listen_use_the_token(cli, scram_pg, role, credential):  # noqa: F811
    """The sim server's engine pool and its LISTEN connection (psycopg direct) sign in."""
    from fastapi.testclient import TestClient

    from emrops.sim.app import create_app

    url = _url(scram_pg, role)
    assert cli("sim", "init-db", "--db", url).exit_code == 0
    with TestClient(create_app(url, "tok-123456")) as client:
        headers = {"Authorization": "Bearer tok-123456"}
        assert client.get("/ready").status_code == 200
        created = client.post("/api/sessions", json={"scenario_id": 1}, headers=headers)
        assert created.status_code == 201, created.text
        runtime = client.app.state.sim.runtime  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while not runtime.hub.live and time.monotonic() < deadline:
            time.sleep(0.05)
        assert runtime.hub.live, "LISTEN never connected with the token"
