"""`sim init-db`, `sim seed` and `sim serve` pointed at another application's database.

A database whose alembic_version names a revision emrops does not know (another Alembic app,
or a newer emrops): init-db and seed ended in "unexpected CommandError: Can't locate revision",
and serve's hint said to run init-db. A database with tables but no schema revision at all:
init-db created the EMRsim tables among the other app's. Each is now refused, naming what
the database holds, and nothing in it changes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest


def _foreign(path: Path, revision: str | None) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, value REAL)")
    conn.execute("INSERT INTO trials (value) VALUES (1.5)")
    if revision is not None:
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", [["init-db"], ["seed", "--sessions", "2"]])
def test_an_unknown_revision_is_refused(cli, tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "optuna.db"
    url = _foreign(path, "v3.2.0.a")
    before = _digest(path)
    result = cli("sim", *command, "--db", url)
    # before: exit 1, "unexpected CommandError: Can't locate revision identified by 'v3.2.0.a'"
    assert result.exit_code == 1, result.stderr
    assert "unexpected" not in result.stderr
    assert "holds schema revision 'v3.2.0.a', which is no EMRsim revision" in result.stderr
    assert _digest(path) == before


def test_tables_without_a_revision_get_no_emrsim_schema(cli, tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    url = _foreign(path, None)
    result = cli("sim", "init-db", "--db", url)
    # before: exit 0, and users, sessions, messages ... were created beside `trials`
    assert result.exit_code == 1, result.stderr
    assert "holds 1 table(s) (trials) but no EMRsim schema" in result.stderr
    tables = [r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")]
    assert tables == ["trials"]


def test_serve_says_whose_database_it_is(cli, tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    url = _foreign(path, "ae1027a6acf")
    before = _digest(path)
    result = cli("sim", "serve", "--db", url, "--port", "9")
    assert result.exit_code == 1, result.stderr
    assert "no EMRsim revision this emrops knows" in result.stderr
    assert "init-db" not in result.stderr  # following that hint could only fail
    assert _digest(path) == before  # before: switched to WAL by the first connection


def test_an_empty_file_and_an_emrsim_database_still_initialise(cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert cli("sim", "init-db", "--db", url).exit_code == 0
    again = cli("sim", "init-db", "--db", url)  # at head already: nothing to do, not refused
    assert again.exit_code == 0, again.stderr
