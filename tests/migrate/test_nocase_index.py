"""An index element ``col COLLATE NOCASE`` over a text column (the common hand-written
case-insensitive unique email) is built over lower(col), so PostgreSQL keeps refusing a
different-case duplicate, as SQLite did; keys the new folding makes equal fail the plan."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.migrate.conftest import pg, script_db

USERS = """
CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL, nick TEXT COLLATE NOCASE);
CREATE UNIQUE INDEX users_email ON users (email COLLATE NOCASE);
CREATE INDEX users_email_desc ON users (email COLLATE NOCASE DESC, id);
CREATE UNIQUE INDEX users_nick ON users (nick COLLATE NOCASE);
INSERT INTO users VALUES (1, 'Bob@x.org', 'Bob'), (2, 'amy@x.org', 'amy');
"""


def test_a_nocase_unique_index_stays_case_insensitive(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(tmp_path / "users.db", USERS)
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    assert any(
        "users_email: COLLATE NOCASE: indexed as lower()" in n
        for n in json.loads(plan.stdout)["notes"]
    )
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    with pg(pg_url) as conn:
        defs = dict(
            conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'users'")
        )
    assert "(lower(email))" in defs["users_email"]
    assert "lower(email) DESC, id" in defs["users_email_desc"]
    assert "(nick)" in defs["users_nick"] and "lower" not in defs["users_nick"]  # citext
    with pg(pg_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO users (email) VALUES ('BOB@X.ORG')")
    with pg(pg_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("INSERT INTO users (email, nick) VALUES ('c@x.org', 'AMY')")
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr


def test_keys_lower_folds_together_fail_the_plan(cli, tmp_path: Path, pg_url: str) -> None:
    # SQLite's NOCASE folds ASCII only: 'zoé' and 'ZOÉ' are two keys there, one under lower()
    url = script_db(
        tmp_path / "twins.db",
        "CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT);"
        "CREATE UNIQUE INDEX u_email ON u (email COLLATE NOCASE);"
        "INSERT INTO u (email) VALUES ('zoé@x.org'), ('ZOÉ@x.org');",
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    (failure,) = json.loads(plan.stdout)["schema_failures"]
    assert (failure["kind"], failure["name"]) == ("unique-data", "u_email")
    assert "merge those rows" in failure["hint"]
