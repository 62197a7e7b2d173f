"""`emrops doctor`: a healthy set-up passes every check; each check broken in turn fails alone
(exit 3, named, with a hint). Real PostgreSQL, a real sim server, real pg_dump; only an "old"
pg_dump is a stand-in script on PATH (the process boundary)."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest

from emrops.health.doctor import CHECKS
from tests.conftest import free_port
from tests.sim.conftest import init_db


@pytest.fixture
def healthy(cli, tmp_path: Path, pg_url: str, start_server, monkeypatch):
    init_db(pg_url)
    keys = json.loads(cli("backup", "keygen", "--json").stdout)
    (tmp_path / "emrops.toml").write_text(
        f'db_url = "{pg_url}"\n[backup]\nstore = "{tmp_path / "store"}"\n'
        f'recipient = "{keys["recipient"]}"\n'
    )
    server = start_server("--db", pg_url)
    monkeypatch.setenv("EMROPS_SIM_URL", server.url)
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", keys["identity"])

    def doctor(*args: str, env: dict[str, str] | None = None):
        return cli("doctor", "--json", *args, env=env)

    return doctor


def _checks(result) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def _failed(result) -> list[str]:
    return [name for name, c in _checks(result).items() if not c["ok"]]


def test_healthy_setup_passes(healthy) -> None:
    result = healthy()
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["format"] == "emrops-doctor/1"
    checks = _checks(result)
    assert list(checks) == list(CHECKS)
    assert checks["schema"]["detail"].endswith("(head)")
    assert checks["pg_tools"]["detail"].startswith("pg_dump ")
    assert "the identity matches" in checks["encryption"]["detail"]
    assert checks["azure_credentials"]["skipped"] is True
    assert "no network call" in checks["azure_credentials"]["detail"]
    assert checks["clock_skew"]["detail"].startswith("database clock ")
    assert checks["sim_ready"]["detail"].endswith("/ready: ready, revision " + _head())
    assert checks["backup_store"]["detail"].endswith(" free")
    assert not list((Path.cwd() / "store").glob(".doctor-*"))  # the probe is removed


def _head() -> str:
    from emrops.db.migrations_api import head_revision

    return head_revision()


def test_broken_config(healthy, tmp_path: Path) -> None:
    (tmp_path / "emrops.toml").write_text("db_url = [unclosed\n")
    result = healthy()
    assert result.exit_code == 3
    assert _failed(result) == ["config"]
    assert all(c["skipped"] for n, c in _checks(result).items() if n != "config")


def test_unreachable_database(healthy) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nope"
    result = healthy(env={"EMROPS_DB_URL": url})
    assert result.exit_code == 3
    assert _failed(result) == ["database"]
    assert _checks(result)["schema"]["skipped"] is True
    last = result.stderr.splitlines()
    assert last[0] == "Error: 1 check(s) failed:" and last[1].startswith("  database: ")


def test_schema_missing(healthy, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("DROP TABLE alembic_version")
    result = healthy()
    # the running server's /ready reports the missing schema too
    assert result.exit_code == 3 and _failed(result) == ["schema", "sim_ready"]
    assert _checks(result)["schema"]["hint"] == "run `emrops sim init-db`"


def test_store_not_writable_and_full(healthy, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = healthy(env={"EMROPS_BACKUP_STORE": str(blocker / "store")})
    assert result.exit_code == 3 and _failed(result) == ["backup_store"]
    full = healthy("--min-free-disk", "1000TB")
    assert (
        _failed(full) == ["backup_store"]
        and "free (minimum" in _checks(full)["backup_store"]["detail"]
    )


def test_pg_dump_older_than_the_server(healthy, tmp_path: Path) -> None:
    bin_dir = tmp_path / "old-bin"
    bin_dir.mkdir()
    for tool in ("pg_dump", "pg_restore"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho '{tool} (PostgreSQL) 9.6.24'\n")
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    result = healthy(env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.exit_code == 3 and _failed(result) == ["pg_tools"]
    check = _checks(result)["pg_tools"]
    assert check["detail"].startswith("pg_dump 9 (") and "older than the server" in check["detail"]
    assert check["hint"].startswith("install the PostgreSQL ")


def test_identity_not_matching_the_recipient(healthy, cli) -> None:
    other = json.loads(cli("backup", "keygen", "--json").stdout)["identity"]
    result = healthy(env={"EMROPS_BACKUP_IDENTITY": other})
    assert result.exit_code == 3 and _failed(result) == ["encryption"]
    assert "does not match any backup.recipient" in _checks(result)["encryption"]["detail"]
    assert other not in result.stdout + result.stderr


def test_azure_store_credentials_checked_only_when_configured(healthy) -> None:
    result = healthy(
        env={
            "EMROPS_BACKUP_STORE": "azure://backups/emrsim",
            "EMROPS_AZURE_STORAGE_CONNECTION_STRING": "not a connection string",
        }
    )
    assert result.exit_code == 3
    assert "azure_credentials" in _failed(result)
    assert _checks(result)["azure_credentials"]["detail"] == (
        "EMROPS_AZURE_STORAGE_CONNECTION_STRING cannot be parsed"
    )


def test_clock_skew_over_the_limit(healthy) -> None:
    result = healthy("--max-clock-skew", "0s")
    assert result.exit_code == 3 and _failed(result) == ["clock_skew"]
    assert "sync both clocks with NTP" in _checks(result)["clock_skew"]["hint"]


def test_sim_server_not_ready(healthy) -> None:
    result = healthy(env={"EMROPS_SIM_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.exit_code == 3 and _failed(result) == ["sim_ready"]
    assert _checks(result)["sim_ready"]["hint"] == "start it: `emrops sim serve`"


def test_missing_sqlite_file_is_not_created(cli, tmp_path: Path) -> None:
    db = tmp_path / "nope.db"
    result = cli("doctor", "--json", env={"EMROPS_DB_URL": f"sqlite:///{db}"})
    assert result.exit_code == 3 and "database" in _failed(result)
    assert not db.exists()


def test_timeout_bounds_a_silent_database_and_sim_server(healthy, blackhole: int) -> None:
    # both accept connections and never answer: each check waits --timeout (libpq counts
    # whole seconds, at least 2), then fails naming what did not answer
    env = {
        "EMROPS_DB_URL": f"postgresql://postgres@127.0.0.1:{blackhole}/nope",
        "EMROPS_SIM_URL": f"http://127.0.0.1:{blackhole}",
    }
    started = time.monotonic()
    result = healthy("--timeout", "2s", env=env)
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.stderr
    assert elapsed < 2 + 2 + 2.5, elapsed
    assert _failed(result) == ["database", "sim_ready"]
    checks = _checks(result)
    assert checks["database"]["detail"] == (
        f"database error on postgresql+psycopg://postgres@127.0.0.1:{blackhole}/nope: "
        "connection timeout expired"
    )
    assert checks["sim_ready"]["detail"] == (
        f"http://127.0.0.1:{blackhole}/ready unreachable (ReadTimeout)"
    )


def test_a_schedule_that_never_fires_fails_its_check(healthy) -> None:
    # the config loaded, so doctor passed; `schedule run` then never ran the backup job
    result = healthy(env={"EMROPS_SCHEDULE_BACKUP": "0 0 31 2 *"})
    assert result.exit_code == 3
    assert _failed(result) == ["schedules"]
    check = _checks(result)["schedules"]
    assert check["detail"].startswith("schedule.backup: invalid schedule '0 0 31 2 *'")
    assert "February" in check["hint"]
    fine = _checks(healthy())["schedules"]
    assert fine["ok"] and "backup 0 2 * * *" in fine["detail"], fine
