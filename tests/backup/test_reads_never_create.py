"""Reads never create (issue #15 item 7): a mistyped path is an error and no file appears.

Only ``sim init-db``, ``sim seed`` and restore create a database; benchmark's documented scratch
files are its own. Each case runs the real command and compares the whole tree before/after.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emrops.db.urls import sqlite_db_url
from tests.backup.conftest import run_backup
from tests.backup.test_hostile_paths import make_db, tree

SKIP = [a for c in ("sim_health", "sim_ready", "backup_age", "disk_space", "scheduler")
        for a in ("--skip", c)]  # fmt: skip


@pytest.fixture
def missing(tmp_path: Path) -> Path:
    return tmp_path / "typo#dir" / "emrsim?.db"


def test_health_with_a_mistyped_db_fails_and_creates_nothing(cli, tmp_path, missing) -> None:
    before = tree(tmp_path)
    for url in (sqlite_db_url(missing), f"sqlite:///{tmp_path / 'emrsim-typo.db'}"):
        result = cli("health", "--db", url, *SKIP)
        assert result.exit_code == 1, (result.stdout, result.stderr)
        assert "SQLite database not found" in result.stderr
        assert "does not create a database when reading one" in result.stderr
    assert tree(tmp_path) == before


def test_backup_run_with_a_missing_source_creates_no_source(cli, tmp_path, missing) -> None:
    result = cli("backup", "run", "--db", sqlite_db_url(missing), "--store", str(tmp_path / "s"))
    assert result.exit_code == 2, result.stderr
    assert "not found" in result.stderr
    assert not missing.parent.exists()


def test_verify_of_a_missing_store_creates_nothing(cli, tmp_path) -> None:
    before = tree(tmp_path)
    result = cli("backup", "verify", "--latest", "--store", str(tmp_path / "no store"))
    assert result.exit_code == 2
    assert "no backups in" in result.stderr
    assert tree(tmp_path) == before


def test_migrate_source_is_never_created(cli, tmp_path, missing, pg_url) -> None:
    before = tree(tmp_path)
    result = cli("migrate-db", "plan", "--from", sqlite_db_url(missing), "--to", pg_url)
    assert result.exit_code == 2, result.stderr
    assert "not found" in result.stderr
    for extra in ([], ["--online"]):
        result = cli("migrate-db", "run", "--from", sqlite_db_url(missing), "--to", pg_url, *extra)
        assert result.exit_code in (1, 2), result.stderr
        assert "not found" in result.stderr
    assert tree(tmp_path) == before


def test_restore_planner_creates_nothing(cli, tmp_path) -> None:
    src = tmp_path / "src.db"
    make_db(src)
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{src}", store)
    target = tmp_path / "new folder#" / "target?.db"
    before = tree(tmp_path)
    result = cli(
        "backup", "restore", manifest["id"], "--target", str(target), "--store", str(store),
        "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "write beside, then rename over" in result.stderr
    assert tree(tmp_path) == before  # not the target, not its folder, no lock, no scratch
