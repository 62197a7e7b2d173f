"""migrate-db when PostgreSQL's disk fills up during the copy: the target database lives in a
tablespace on a 20 MB tmpfs. Before, the error's hint said the connection was lost and the
failing row was named as if it were at fault, and psycopg's own "error ignored terminating
<psycopg.Copy ...>" warning reached stderr unformatted. Now: the disk is named, no row is
blamed, the journal says where it stopped, and rollback frees the space."""

from __future__ import annotations

import os
import pwd
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PG_ADMIN_DSN, PG_HOST


@pytest.fixture
def full_target() -> Iterator[str]:
    """A database whose tablespace is a 20 MB tmpfs (needs root to mount: skipped otherwise,
    and where PostgreSQL runs as another machine's user)."""
    # outside pytest's folders, which are private to root: the server walks this path
    mount = Path(tempfile.mkdtemp(prefix="emrops-full-"))
    os.chmod(mount, 0o755)
    try:
        postgres_uid = pwd.getpwnam("postgres").pw_uid
    except KeyError:
        pytest.skip("no local postgres user: the server is not on this machine")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    space = f"tiny_{uuid.uuid4().hex[:10]}"
    name = f"emrops_full_{uuid.uuid4().hex[:10]}"
    try:
        (mount / "ts").mkdir()
        os.chown(mount / "ts", postgres_uid, -1)
        os.chmod(mount, 0o755)  # the tmpfs root
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE {space} LOCATION '{mount / 'ts'}'")
            admin.execute(f"CREATE DATABASE {name} TABLESPACE {space}")
        yield f"postgresql+psycopg://postgres@{PG_HOST}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"DROP TABLESPACE IF EXISTS {space}")
        subprocess.run(["umount", str(mount)], check=False)
        mount.rmdir()


def _source(tmp_path: Path) -> Path:
    """Two tables of about 24 MB of text that does not compress."""
    path = tmp_path / "src.db"
    with sqlite3.connect(path) as conn:
        for table in ("a", "b"):
            conn.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            conn.execute(
                f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 6000) "
                f"INSERT INTO {table} SELECT i, hex(randomblob(1000)) FROM n"
            )
    conn.close()
    return path


def test_disk_full_during_copy_names_the_disk_and_rolls_back(
    cli, tmp_path: Path, full_target: str
) -> None:
    src = _source(tmp_path)
    result = cli("migrate-db", "run", "--from", f"sqlite:///{src}", "--to", full_target)
    assert result.exit_code == 1, result.stderr
    assert "unexpected" not in result.stderr
    # PostgreSQL's own words: ENOSPC, or a page written in part as the disk filled up
    assert "No space left on device" in result.stderr or "could not extend file" in result.stderr, (
        result.stderr
    )
    assert "PostgreSQL's disk is full" in result.stderr
    assert "connection to PostgreSQL was lost" not in result.stderr
    assert "failed, row" not in result.stderr  # no row is blamed for the disk
    assert "error ignored terminating" not in result.stderr
    status = cli("migrate-db", "status", "--to", full_target)
    assert "state: failed (step: copying)" in status.stdout + status.stderr
    back = cli("migrate-db", "rollback", "--to", full_target, "--yes")
    assert back.exit_code == 0, back.stderr
    with psycopg.connect(full_target.replace("+psycopg", "")) as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert left.fetchone() == (0,)
