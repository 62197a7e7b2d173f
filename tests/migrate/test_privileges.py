"""migrate-db with a target user that lacks privileges: a clear error naming what to grant,
never an "unexpected" one."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg

from tests.conftest import PG_ADMIN_DSN, PG_HOST, create_pg_database, drop_pg_database


def test_run_without_create_on_the_schema_names_the_grant(cli, tmp_path: Path) -> None:
    source = _source(
        tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'a')"
    )
    name = create_pg_database()
    role = f"weak_{name[-8:]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, dbname=name, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
            admin.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        target = f"postgresql+psycopg://{role}@{PG_HOST}/{name}"
        result = cli("migrate-db", "run", "--from", f"sqlite:///{source}", "--to", target)
        assert result.exit_code == 1, result.stderr
        assert "unexpected" not in result.stderr
        assert "cannot create the migration journal" in result.stderr
        assert "GRANT CREATE ON SCHEMA" in result.stderr
        with psycopg.connect(PG_ADMIN_DSN, dbname=name) as admin:
            tables = admin.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert tables is not None and tables[0] == 0  # nothing half-made on the target
    finally:
        drop_pg_database(name)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_verify_and_rollback_without_privileges_say_permission_denied(
    cli, tmp_path: Path, pg_url: str
) -> None:
    """Any privilege error the database raises is reported as such (exit 1, what to do), not
    as an "unexpected" error: here verify without SELECT on the migrated table, and rollback
    by a user who does not own the journal."""
    source = _source(
        tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'a')"
    )
    assert cli("migrate-db", "run", "--from", f"sqlite:///{source}", "--to", pg_url).exit_code == 0
    name = pg_url.rsplit("/", 1)[1]
    role = f"weak_{name[-8:]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, dbname=name, autocommit=True) as admin:
            admin.execute(f'CREATE ROLE "{role}" LOGIN')
            admin.execute(f'GRANT SELECT ON emrops_migration TO "{role}"')
        weak = f"postgresql+psycopg://{role}@{PG_HOST}/{name}"
        for args in (("verify", "--from", f"sqlite:///{source}"), ("rollback", "-y")):
            result = cli("migrate-db", *args, "--to", weak)
            assert result.exit_code == 1, (args, result.stderr)
            assert "unexpected" not in result.stderr
            assert "permission denied by the database" in result.stderr, result.stderr
        with psycopg.connect(PG_ADMIN_DSN, dbname=name) as admin:
            kept = admin.execute("SELECT count(*) FROM t").fetchone()
        assert kept is not None and kept[0] == 1  # the refused rollback removed nothing
    finally:
        with psycopg.connect(PG_ADMIN_DSN, dbname=name, autocommit=True) as admin:
            admin.execute(f'REVOKE ALL ON emrops_migration FROM "{role}"')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_reject_file_that_cannot_be_a_file_is_refused_before_anything_starts(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _source(
        tmp_path,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, d DATETIME)",
        "INSERT INTO t VALUES (1, '2024-01-01 00:00:00'), (2, 'garbage')",
    )
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad, words in ((tmp_path, "is a folder"), (a_file / "x.jsonl", "is a file, not a folder")):
        result = cli(
            "migrate-db", "run", "--from", f"sqlite:///{source}", "--to", pg_url,
            "--on-error", "reject", "--reject-file", str(bad),
        )  # fmt: skip
        assert result.exit_code == 2, result.stderr
        assert words in result.stderr and "unexpected" not in result.stderr
        with psycopg.connect(PG_ADMIN_DSN, dbname=pg_url.rsplit("/", 1)[1]) as conn:
            made = conn.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
            ).fetchone()
        assert made is not None and made[0] == 0  # nothing started on the target


def test_a_cast_file_that_is_not_a_readable_toml_file_is_a_usage_error(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _source(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    latin = tmp_path / "latin1.toml"
    latin.write_bytes(b'[t.v]\ntype = "text" # caf\xe9\n')
    for bad, words in (
        (tmp_path, "cannot read cast file"),
        (latin, "cannot read cast file"),
        (tmp_path / "missing.toml", "cast file not found"),
    ):
        result = cli(
            "migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url,
            "--cast", str(bad),
        )  # fmt: skip
        assert result.exit_code == 2, result.stderr
        assert words in result.stderr and "unexpected" not in result.stderr


def _source(tmp_path: Path, *statements: str) -> Path:
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        for statement in statements:
            conn.execute(statement)
    conn.close()
    return source
