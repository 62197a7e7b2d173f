"""Session 14: the log line when PostgreSQL refuses to tell its system identifier (a managed
server, or a role without EXECUTE on pg_control_system) is the driver's first line, not
SQLAlchemy's "(Background on this error at: https://sqlalche.me/...)"."""

from __future__ import annotations

import json
import logging
import uuid

import psycopg
import pytest

from emrops.backup.sources import postgres_identity
from emrops.db.engine import parse_db_url
from tests.conftest import PG_ADMIN_DSN, PG_HOST


def test_a_refused_system_identifier_logs_postgresqls_first_line(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    role = f"plain_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_ADMIN_DSN} dbname={database}", autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        # per database (pg_proc is), so no other test's database is touched
        admin.execute("REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC")
    try:
        url = parse_db_url(f"postgresql+psycopg://{role}@{PG_HOST}/{database}")
        emrops_log = logging.getLogger("emrops")  # may not propagate after a CLI run
        emrops_log.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.INFO, logger="emrops"):
                identity = postgres_identity(url)
        finally:
            emrops_log.removeHandler(caplog.handler)
        assert identity["kind"] == "postgresql" and "system_identifier" not in identity
        lines = [r.getMessage() for r in caplog.records if "system identifier" in r.getMessage()]
        assert lines and "permission denied for function pg_control_system" in lines[0], lines
        assert "sqlalche.me" not in lines[0] and "\n" not in lines[0]
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_large_object_of_another_role_names_its_owner_and_how_to_restore(cli, tmp_path) -> None:
    """Azure Database for PostgreSQL has no superuser: a restoring role that does not own a
    large object of the target cannot unlink it. The restore rolled back with the bare
    "must be owner of large object N"; now the owner is named and the hint says what to do."""
    suffix = uuid.uuid4().hex[:8]
    database, restorer, other = f"emrops_lo_{suffix}", f"rest_{suffix}", f"oth_{suffix}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{restorer}" LOGIN CREATEDB')
        admin.execute(f'CREATE ROLE "{other}"')
        admin.execute(f'CREATE DATABASE "{database}" OWNER "{restorer}"')
    url = f"postgresql+psycopg://{restorer}@{PG_HOST}/{database}"
    try:
        with psycopg.connect(f"{PG_ADMIN_DSN} dbname={database} user={restorer}") as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)")
        store = tmp_path / "store"
        made = cli("backup", "run", "--db", url, "--store", str(store))
        assert made.exit_code == 0, made.stderr
        with psycopg.connect(f"{PG_ADMIN_DSN} dbname={database}", autocommit=True) as admin:
            admin.execute("SELECT lo_from_bytea(424243, 'x'::bytea)")
            admin.execute(f'ALTER LARGE OBJECT 424243 OWNER TO "{other}"')
            admin.execute(f'GRANT SELECT ON LARGE OBJECT 424243 TO "{restorer}"')
        done = cli(
            "backup", "restore", "--latest", "--target", url, "--store", str(store),
            "--yes", "--force",
        )  # fmt: skip
        assert done.exit_code == 1, done.stderr
        assert (
            f"must be owner of large object 424243 (owned by {other}, not by {restorer})"
            in done.stderr
        )
        assert "GRANT owner TO user" in done.stderr and "unexpected" not in done.stderr
        with psycopg.connect(f"{PG_ADMIN_DSN} dbname={database}") as admin:
            assert admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (1,)
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{restorer}"')
            admin.execute(f'DROP ROLE IF EXISTS "{other}"')


def test_listing_a_store_that_does_not_exist_warns(cli, tmp_path) -> None:
    """`backup list --store /mistyped/path` printed an empty table, exit 0: the same answer as
    a store whose backups were all deleted. It still exits 0 (nothing failed) but says so."""
    missing = tmp_path / "no-such-store"
    for extra in ((), ("--json",)):
        result = cli("backup", "list", "--store", str(missing), *extra)
        assert result.exit_code == 0, result.stderr
        assert f"backup store {missing} does not exist" in result.stderr.replace("\n", " ")
    assert not missing.exists()  # listing created nothing
    missing.mkdir()
    quiet = cli("backup", "list", "--store", str(missing))
    assert quiet.exit_code == 0 and "does not exist" not in quiet.stderr


def test_a_folder_whose_manifest_went_is_not_swept_as_a_crashed_run(cli, tmp_path) -> None:
    """Every backup run removes id folders without a manifest.json (a run killed before its
    manifest). A folder that also holds a verification or pin record held a whole backup once
    (its manifest deleted by hand, or named otherwise by a newer emrops): it was removed with
    its data file, which would still restore. Now it is left, with a warning naming it."""
    import sqlite3 as sq

    db = tmp_path / "app.db"
    conn = sq.connect(db)
    conn.execute("CREATE TABLE t (v)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    conn.close()
    store = tmp_path / "store"
    first = cli("backup", "run", "--db", f"sqlite:///{db}", "--store", str(store), "--json")
    assert first.exit_code == 0, first.stderr
    backup_id = json.loads(first.stdout)["manifest"]["id"]
    assert cli("backup", "pin", backup_id, "--store", str(store)).exit_code == 0
    (store / backup_id / "manifest.json").unlink()
    crashed = store / "20200101T000000.000Z-abcdef"  # a run killed before its manifest
    crashed.mkdir()
    (crashed / "database.sqlite.zst").write_bytes(b"partial")
    second = cli("backup", "run", "--db", f"sqlite:///{db}", "--store", str(store))
    assert second.exit_code == 0, second.stderr
    assert not crashed.exists()  # a crashed run's folder still goes
    kept = store / backup_id
    assert (kept / "database.sqlite.zst").is_file() and (kept / "pin.json").is_file()
    assert f"{backup_id} in {store} has no manifest.json but holds pin.json" in " ".join(
        second.stderr.split()
    )
