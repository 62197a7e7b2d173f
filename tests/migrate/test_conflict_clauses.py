"""SQLite's ON CONFLICT clauses on PRIMARY KEY, UNIQUE and NOT NULL. PostgreSQL has none at
table level, so what they did in SQLite (replace the old row, skip the write, put the default
in) becomes an error on the target. The plan used to say nothing; it now names each clause
and what the app has to write instead."""

from __future__ import annotations

import json
from pathlib import Path

from emrops.migrate.reflect import parse_conflict_clauses
from tests.migrate.conftest import script_db

SQL = """CREATE TABLE u (
    id INTEGER PRIMARY KEY ON CONFLICT REPLACE,
    "Code" TEXT UNIQUE ON CONFLICT IGNORE,
    k TEXT NOT NULL ON CONFLICT REPLACE DEFAULT 'x',
    plain TEXT UNIQUE ON CONFLICT ABORT,
    a INTEGER, b INTEGER,
    CONSTRAINT ab UNIQUE (a, "b") ON CONFLICT FAIL
)"""


def test_parse_conflict_clauses() -> None:
    assert parse_conflict_clauses(SQL) == [
        ("id", "PRIMARY KEY", "REPLACE"),
        ("Code", "UNIQUE", "IGNORE"),
        ("k", "NOT NULL", "REPLACE"),
        ("(a, b)", "UNIQUE", "FAIL"),
    ]
    assert parse_conflict_clauses("CREATE TABLE t (a UNIQUE, b NOT NULL)") == []


def test_the_plan_names_each_clause(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(tmp_path / "c.db", SQL + "; INSERT INTO u (k, a, b) VALUES ('v', 1, 2);")
    result = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert result.exit_code == 0, result.stderr
    notes = [n for n in json.loads(result.stdout)["notes"] if "ON CONFLICT" in n]
    # before: none of them
    assert [n.split(":")[0] for n in notes] == ["u.id", "u.Code", "u.k", "u.(a, b)"]
    assert "deleted the old row in SQLite" in notes[0] and "DO UPDATE" in notes[0]
    assert "DO NOTHING" in notes[1]
    assert "became the column's default" in notes[2]
    assert "FAIL keeps the statement's earlier changes" in notes[3]
