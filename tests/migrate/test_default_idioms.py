"""Defaults apps write that plan refused as having no PostgreSQL equivalent (exit 3 until a
cast rule was added by hand): JSON constants (`json_object()`, `json('[]')`) and epoch
milliseconds (`strftime('%s','now') * 1000`, the julianday idiom). Each now becomes the
PostgreSQL default that gives the same value on the target."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emrops.migrate.sql.defaults import translate
from tests.migrate.conftest import pg, script_db


@pytest.mark.parametrize(
    ("expr", "pg_type", "sql"),
    [
        ("json_object()", "text", "'{}'"),
        ("json('[]')", "jsonb", "'[]'"),
        ("json_array(1, 'a')", "text", """'[1,"a"]'"""),
        ("upper('abc') || '-x'", "text", "'ABC-x'"),
    ],
)
def test_pure_functions_of_literals_are_constants(expr: str, pg_type: str, sql: str) -> None:
    d = translate(expr, pg_type)
    assert (d.sql, d.ok) == (sql, True)


@pytest.mark.parametrize(
    "expr",
    ["json_object('at', datetime('now'))", "lower(hex(randomblob(2))) || json('[]')", "changes()"],
)
def test_nothing_that_changes_is_frozen(expr: str) -> None:
    d = translate(expr, "text")
    assert not (d.ok and d.sql and d.sql.startswith("'")), d


SCHEMA = """
CREATE TABLE t (
    id INTEGER PRIMARY KEY,
    meta TEXT NOT NULL DEFAULT (json_object()),
    tags TEXT DEFAULT (json('[]')),
    created_ms INTEGER DEFAULT (strftime('%s','now') * 1000),
    updated_ms INTEGER DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
INSERT INTO t (id) VALUES (1);
"""


def test_the_target_fills_them_as_sqlite_did(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(tmp_path / "app.db", SCHEMA)
    result = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    # before: exit 3, "4 column default(s) have no PostgreSQL equivalent"
    assert result.exit_code == 0, result.stderr
    before = time.time()
    with pg(pg_url) as conn:
        row = conn.execute(
            "INSERT INTO t (id) VALUES (2) RETURNING meta, tags, created_ms, updated_ms"
        ).fetchone()
    after = time.time()
    assert row is not None
    meta, tags, created_ms, updated_ms = row
    assert (meta, tags) == ("{}", "[]")
    assert created_ms % 1000 == 0 and before - 1 <= created_ms / 1000 <= after + 1
    assert before - 1 <= updated_ms / 1000 <= after + 1
