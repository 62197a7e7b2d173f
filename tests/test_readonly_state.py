"""A state folder on a read-only file system (a container's read-only root, a mistyped
EMROPS_STATE_DIR under /usr).

`migrate-db run` found out only after copying every table (its pre-migration backup index is
kept there), and stopped with "unexpected OSError" leaving a half-built target; `checklist run`
ended in "unexpected OSError" too. Both now refuse at the start, naming the folder (exit 2),
and migrate-db touches nothing on the target.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import tmpfs


@pytest.fixture
def readonly_dir() -> Iterator[Path]:
    with tmpfs("ro,size=64k") as mount:
        yield mount


def _emrops(args: list[str], state: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMROPS_STATE_DIR": str(state), "CI": "true", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "emrops", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def test_migrate_refuses_before_touching_the_target(
    tmp_path: Path, readonly_dir: Path, pg_url: str
) -> None:
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", [(str(i),) for i in range(100)])
    conn.commit()
    conn.close()
    result = _emrops(
        ["migrate-db", "run", "--from", f"sqlite:///{source}", "--to", pg_url],
        readonly_dir / "state",
        tmp_path,
    )
    # before: exit 1 "unexpected OSError: [Errno 30] Read-only file system" after the copy,
    # with t and the journal left in the target
    assert result.returncode == 2, result.stderr
    assert "unexpected" not in result.stderr
    assert f"the state folder {readonly_dir / 'state' / 'migrate'} is not writable" in result.stderr
    assert "Read-only file system" in result.stderr
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as pg:
        tables = pg.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert tables == (0,)


def test_checklist_run_names_the_folder(tmp_path: Path, readonly_dir: Path) -> None:
    result = _emrops(
        ["checklist", "run", "recovery-drill", "--non-interactive"], readonly_dir, tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert "unexpected" not in result.stderr
    assert "the checklist runs folder" in result.stderr and "is not writable" in result.stderr


def test_checklist_docs_into_a_read_only_folder(tmp_path: Path, readonly_dir: Path) -> None:
    result = _emrops(["checklist", "docs", "--dir", str(readonly_dir / "docs")], tmp_path, tmp_path)
    # before: exit 1 "unexpected OSError: [Errno 30] Read-only file system"
    assert result.returncode == 2, result.stderr
    assert "unexpected" not in result.stderr
    assert f"--dir {readonly_dir / 'docs'} is not writable" in result.stderr
