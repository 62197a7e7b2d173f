"""Fixtures for migrate-db tests: the zoo database, its cast file, PostgreSQL helpers."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.migrate.zoo import CASTS, build_zoo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pg(url: str) -> psycopg.Connection:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC")


def script_db(path: Path, script: str) -> str:
    """An SQLite file built from ``script``; its sqlite:/// URL."""
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def migrated_ok(cli: Any, url: str, pg_url: str) -> dict[str, Any]:
    """plan, run and verify, each exit 0; the plan as JSON."""
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    return dict(json.loads(plan.stdout))


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    return build_zoo(tmp_path / "zoo.db")


@pytest.fixture
def dirty_zoo(tmp_path: Path) -> Path:
    return build_zoo(tmp_path / "dirty.db", bad=True)


@pytest.fixture
def casts(tmp_path: Path) -> Path:
    path = tmp_path / "casts.toml"
    path.write_text(CASTS)
    return path
