"""Session 9 hostile-input campaign on PostgreSQL backups and restores and on the Azure Blob
store: regression tests of the defects found (docs/backup.md, *PostgreSQL and Azure, session
9*). Real PostgreSQL, real Azurite, the real CLI in a subprocess where a hang or a process
boundary matters."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, quote

import psycopg
import pytest
from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

from tests.backup.conftest import emrops_proc, json_of, run_backup
from tests.conftest import PG_HOST, create_pg_database, drop_pg_database


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(_dsn(url)) as conn:
        return conn.execute(query).fetchall()


@pytest.fixture
def pg_db() -> object:
    """A factory of fresh PostgreSQL databases (URL), dropped after the test."""
    made: list[str] = []

    def make() -> str:
        made.append(create_pg_database("emrops_c9"))
        return f"postgresql+psycopg://postgres@{PG_HOST}/{made[-1]}"

    yield make
    for name in made:
        drop_pg_database(name)


def test_restore_blocked_by_an_open_transaction_fails_in_time_naming_it(pg_db, tmp_path) -> None:
    """A session idle in transaction on a table of the target made `restore --force` wait for
    ever (pg_restore's script sets lock_timeout = 0), silently, maintenance on. Now each lock
    waits at most the target's lock_timeout (here 2 s from PGOPTIONS), then the transaction
    rolls back: exit 1 naming the session, target unchanged."""
    src = pg_db()
    with psycopg.connect(_dsn(src)) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 5)")
    store = tmp_path / "store"
    backup = emrops_proc("backup", "run", "--db", src, "--store", str(store), "--json")
    assert backup.returncode == 0, backup.stderr
    with psycopg.connect(_dsn(src)) as conn:
        conn.execute("INSERT INTO t VALUES (6)")
    holder = psycopg.connect(_dsn(src), application_name="c9-holder")
    try:
        holder.execute("SELECT count(*) FROM t")  # idle in transaction from here on
        started = time.monotonic()
        done = emrops_proc(
            "backup", "restore", "--latest", "--source", "all", "--target", src,
            "--store", str(store), "--yes", "--force",
            env={"PGOPTIONS": "-c lock_timeout=2s"},
            timeout=40,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        pid = holder.info.backend_pid
    finally:
        holder.close()
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "canceling statement due to lock timeout" in done.stderr
    assert f"pid {pid} (postgres, c9-holder, idle in transaction since" in done.stderr
    assert "Try: end them" in done.stderr and "Traceback" not in done.stderr
    assert elapsed < 30
    assert _rows(src, "SELECT count(*) FROM t") == [(6,)]  # unchanged: the row after the backup


def test_restore_blocked_by_a_later_function_on_a_tables_type_names_it(cli, pg_db, tmp_path):
    """A function created after the backup that takes a restored table's row type: pg_restore
    --clean cannot drop the table. It failed (exit 1, target unchanged) with the bare "cannot
    drop table t because other objects depend on it" and no hint; now the dependents are named
    and the hint says what to do."""
    src = pg_db()
    with psycopg.connect(_dsn(src)) as conn:
        conn.execute("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 5)")
    store = tmp_path / "store"
    backup_id = run_backup(cli, src, store)["id"]
    with psycopg.connect(_dsn(src)) as conn:
        conn.execute("INSERT INTO t VALUES (6)")
        conn.execute("CREATE FUNCTION first_of(r t) RETURNS int LANGUAGE sql AS 'SELECT r.id'")
    done = cli(
        "backup", "restore", backup_id, "--target", src, "--store", str(store), "--yes", "--force"
    )  # fmt: skip
    assert done.exit_code == 1, done.stderr
    assert "cannot drop table public.t because other objects depend on it" in done.stderr
    assert "(function public.first_of(public.t) depends on type public.t)" in done.stderr
    assert "Try: objects created after the backup" in done.stderr
    assert _rows(src, "SELECT count(*) FROM t") == [(6,)]
    assert _rows(src, "SELECT count(*) FROM pg_proc WHERE proname = 'first_of'") == [(1,)]


def test_a_sas_azure_refuses_is_a_configuration_error_with_a_hint_and_stays_masked(
    cli, azure_store: str, azurite: str, monkeypatch, seeded_sqlite: str
) -> None:
    """A SAS token Azure refuses (wrong signature; an expired one or one without the rights
    gets the same 403) read "Azure Blob Storage error on ...: Server failed to authenticate"
    with no hint. Now it says access was refused and what to check; the token never shows."""
    key = azurite.split("AccountKey=")[1].split(";")[0]
    endpoint = azurite.split("BlobEndpoint=")[1].rstrip(";")
    sas = generate_account_sas(
        "devstoreaccount1", key, ResourceTypes(service=True, container=True, object=True),
        AccountSasPermissions(read=True, write=True, delete=True, list=True, add=True,
                              create=True, tag=True),
        datetime.now(UTC) + timedelta(hours=1),
    )  # fmt: skip
    good = f"BlobEndpoint={endpoint};SharedAccessSignature={sas}"
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", good)
    run_backup(cli, seeded_sqlite, azure_store)  # the SAS itself works
    sig = parse_qs(sas)["sig"][0]
    forged = good.replace("sig=", "sig=AAAA")
    for args in (["list"], ["run", "--db", seeded_sqlite], ["verify", "--all"]):
        done = cli("backup", *args, "--store", azure_store, env={
            "EMROPS_AZURE_STORAGE_CONNECTION_STRING": forged})  # fmt: skip
        assert done.exit_code == 1, (args, done.stderr)
        assert f"Error: Azure refused access to {azure_store} (403 " in done.stderr, done.stderr
        assert "Try: check EMROPS_AZURE_STORAGE_CONNECTION_STRING" in done.stderr
        for shown in (done.stdout, done.stderr):
            assert sig not in shown and quote(sig, safe="") not in shown and "AAAA" not in shown


def test_restore_force_drops_a_sequence_created_after_the_backup(cli, pg_db, tmp_path) -> None:
    """A standalone sequence created after the backup stayed in the target after `restore
    --force` (exit 0; only tables and views were dropped), so the database was not the
    backup's. Sequences owned by a column (serial, identity) and standalone ones the backup
    holds come back with their values."""
    src = pg_db()
    with psycopg.connect(_dsn(src)) as conn:
        conn.execute(
            "CREATE TABLE t (id int GENERATED ALWAYS AS IDENTITY, s serial, v int);"
            "INSERT INTO t (v) SELECT generate_series(1, 5);"
            "CREATE SEQUENCE kept START 9223372036854775000; SELECT nextval('kept')"
        )
    store = tmp_path / "store"
    backup_id = run_backup(cli, src, store)["id"]
    with psycopg.connect(_dsn(src)) as conn:
        conn.execute("CREATE SEQUENCE later; SELECT nextval('kept'); INSERT INTO t (v) VALUES (6)")
    done = json_of(
        cli(
            "backup", "restore", backup_id, "--target", src, "--store", str(store),
            "--yes", "--force", "--json",
        )
    )  # fmt: skip
    assert any("public.later" in note for note in done["notes"]), done["notes"]
    seqs = "SELECT sequencename, last_value FROM pg_sequences ORDER BY 1"
    assert _rows(src, seqs) == [("kept", 9223372036854775000), ("t_id_seq", 5), ("t_s_seq", 5)]
    assert _rows(src, "SELECT count(*) FROM t") == [(5,)]


def test_a_sql_ascii_database_is_backed_up_and_restored_in_its_encoding(cli, tmp_path) -> None:
    """SQL_ASCII (legacy databases holding bytes in no declared encoding): every command
    failed on the first connect with "unexpected TypeError" (psycopg got the server version as
    bytes); a restore into a new database created it in UTF8, which took the non-UTF-8 bytes in
    (no conversion from SQL_ASCII) so that reading them failed."""
    source, target = (f"emrops_c9_ascii_{tag}_{time.time_ns()}" for tag in ("src", "new"))
    with psycopg.connect(f"postgresql://postgres@{PG_HOST}/postgres", autocommit=True) as conn:
        conn.execute(
            f"CREATE DATABASE \"{source}\" ENCODING 'SQL_ASCII' LC_COLLATE 'C' "
            "LC_CTYPE 'C' TEMPLATE template0"
        )
    try:
        url = f"postgresql+psycopg://postgres@{PG_HOST}/{source}"
        with psycopg.connect(_dsn(url), autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
            conn.execute("INSERT INTO t VALUES (1, 'abc'), (2, E'caf\\xe9')")
        store = tmp_path / "store"
        manifest = run_backup(cli, url, store)
        new_url = f"postgresql+psycopg://postgres@{PG_HOST}/{target}"
        result = cli("backup", "restore", "-y", "--store", str(store), manifest["id"],
                     "--target", new_url)  # fmt: skip
        assert result.exit_code == 0, result.stderr
        assert "with the backup's encoding SQL_ASCII" in result.stdout + result.stderr
        with psycopg.connect(_dsn(new_url)) as conn:
            conn.execute("SET client_encoding = 'SQL_ASCII'")
            assert conn.execute("SHOW server_encoding").fetchone() == (b"SQL_ASCII",)
            rows = conn.execute("SELECT id, convert_to(v, 'SQL_ASCII') FROM t ORDER BY id")
            assert [(i, bytes(v)) for i, v in rows] == [(1, b"abc"), (2, b"caf\xe9")]
    finally:
        drop_pg_database(source)
        drop_pg_database(target)
