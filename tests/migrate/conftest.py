"""Fixtures for migrate-db tests: the zoo database, its cast file, PostgreSQL helpers."""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
import pytest

from tests.migrate.zoo import CASTS, build_zoo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pg(url: str) -> psycopg.Connection:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(dsn, autocommit=True, options="-c TimeZone=UTC")


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
