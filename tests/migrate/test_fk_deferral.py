"""Deferrable foreign keys. Django writes every foreign key of an SQLite database as
``REFERENCES "t" ("id") DEFERRABLE INITIALLY DEFERRED`` (and does the same on PostgreSQL):
code that saves rows referring to each other in one transaction, or loads fixtures, relies on
the check waiting for COMMIT. migrate-db dropped the clause without a word, so the same code
failed on the target at its first statement."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from emrops.migrate.reflect import parse_fk_deferral
from tests.migrate.conftest import pg, script_db

SCHEMA = """
CREATE TABLE "app_author" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "best_book_id" bigint NULL REFERENCES "app_book" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE "app_book" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    "author_id" bigint NOT NULL REFERENCES "app_author" ("id") DEFERRABLE INITIALLY DEFERRED);
CREATE TABLE pair (a INTEGER, b INTEGER, PRIMARY KEY (a, b));
CREATE TABLE uses (
    id INTEGER PRIMARY KEY,
    x INTEGER, y INTEGER,
    loose INTEGER REFERENCES app_book(id) DEFERRABLE,
    never INTEGER REFERENCES app_book(id) NOT DEFERRABLE INITIALLY DEFERRED,
    plain INTEGER REFERENCES app_book(id) ON DELETE CASCADE,
    CONSTRAINT uses_pair FOREIGN KEY (x, y) REFERENCES pair (a, b)
        ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED
);
INSERT INTO app_author (id, best_book_id) VALUES (1, 1);
INSERT INTO app_book (id, author_id) VALUES (1, 1);
INSERT INTO pair VALUES (1, 2);
INSERT INTO uses VALUES (1, 1, 2, 1, 1, 1);
"""


def test_parse_fk_deferral() -> None:
    sql = SCHEMA.split(";")[3]
    assert parse_fk_deferral(sql) == {
        ("loose",): "DEFERRABLE INITIALLY IMMEDIATE",
        ("x", "y"): "DEFERRABLE INITIALLY DEFERRED",
    }
    django = SCHEMA.split(";")[1]
    assert parse_fk_deferral(django) == {("author_id",): "DEFERRABLE INITIALLY DEFERRED"}


def test_deferrable_keys_stay_deferrable(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(tmp_path / "django.db", SCHEMA)
    result = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert result.exit_code == 0, result.stderr
    with pg(pg_url) as conn:
        rows = conn.execute(
            "SELECT conname, condeferrable, condeferred FROM pg_constraint "
            "WHERE contype = 'f' AND convalidated"
        ).fetchall()
        flags = {name: (deferrable, deferred) for name, deferrable, deferred in rows}
        # before: every one (False, False)
        assert flags == {
            "app_author_best_book_id_fkey": (True, True),
            "app_book_author_id_fkey": (True, True),
            "uses_loose_fkey": (True, False),
            "uses_never_fkey": (False, False),
            "uses_plain_fkey": (False, False),
            "uses_pair": (True, True),
        }
        # what the app does: rows that refer to each other, saved in one transaction
        with conn.transaction():
            conn.execute("INSERT INTO app_book (id, author_id) VALUES (2, 2)")
            conn.execute("INSERT INTO app_author (id, best_book_id) VALUES (2, 2)")
        # and a key that is not deferrable is still checked at once
        with pytest.raises(psycopg.errors.ForeignKeyViolation), conn.transaction():
            conn.execute("UPDATE uses SET never = 99")
