"""A PostgreSQL database with the app's statement_timeout set on it (ALTER DATABASE ... SET
statement_timeout, a usual guard on managed servers). `backup run` counts every table's rows
in its snapshot, in a session of its own: on a table big enough, the count outlived the
timeout and every backup failed ("canceling statement due to statement timeout"), while
pg_dump itself runs without one. Backups and their verification now start their sessions
without the app's timeout, as pg_dump does."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
from psycopg import sql

from tests.conftest import PG_HOST


def test_a_backup_outlives_the_apps_statement_timeout(cli, tmp_path: Path, pg_url: str) -> None:
    dsn = pg_url.replace("+psycopg", "")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE readings AS "
            "SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 300000) g"
        )
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET statement_timeout = '5ms'").format(sql.Identifier(name))
        )
    store = tmp_path / "store"
    made = cli("backup", "run", "--db", pg_url, "--store", str(store), "--json")
    # before: exit 1, "canceling statement due to statement timeout" (the snapshot's counts)
    assert made.exit_code == 0, made.stderr
    manifest = json.loads(made.stdout)["manifest"]
    assert 300_000 in manifest["row_counts"].values(), manifest["row_counts"]
    admin = f"postgresql+psycopg://postgres@{PG_HOST}/postgres"
    checked = cli("backup", "verify", manifest["id"], "--store", str(store), "--db", admin)
    assert checked.exit_code == 0, checked.stderr
