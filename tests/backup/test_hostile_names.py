"""Hostile table and column names: backup, verify and restore quote every identifier (#15 item 4).

The corpus holds the characters that end or escape an identifier in some dialect (``"``,
``'``, ``]``, ``[``, a backtick), spaces, keywords, unicode, a newline and ``%`` (a placeholder
for psycopg). Row counts in the manifest must be each table's own count, on SQLite and on the
real PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
from psycopg import sql

from tests.backup.conftest import json_of, run_backup
from tests.conftest import PG_HOST

NAMES = [
    'say "hi"',
    "it's",
    "end]",
    "[start",
    "back`tick",
    "two words",
    "select",
    "order",
    "ünïcødé 表",
    "new\nline",
    "50%",
    "%b%s",
    "a.b",
]


def expected() -> dict[str, int]:
    return {name: i + 1 for i, name in enumerate(NAMES)}


def test_sqlite_hostile_names(cli, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    for name, rows in expected().items():
        ident = '"' + name.replace('"', '""') + '"'
        conn.execute(f'CREATE TABLE {ident} ({ident} TEXT, {ident[:-1]} 2" INTEGER)')
        conn.executemany(f"INSERT INTO {ident} VALUES (?, ?)", [(name, i) for i in range(rows)])
    conn.commit()
    conn.close()
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{path}", store)
    assert manifest["row_counts"] == expected()
    verified = json_of(cli("backup", "verify", manifest["id"], "--store", str(store), "--json"))
    assert verified[0]["ok"] is True
    target = tmp_path / "restored.db"
    json_of(
        cli(
            "backup",
            "restore",
            manifest["id"],
            "--target",
            str(target),
            "--store",
            str(store),
            "--yes",
            "--json",
        )  # fmt: skip
    )
    back = sqlite3.connect(target)
    try:
        for name, rows in expected().items():
            ident = '"' + name.replace('"', '""') + '"'
            assert back.execute(f"SELECT count(*) FROM {ident}").fetchone()[0] == rows
    finally:
        back.close()


def test_postgres_hostile_names(cli, tmp_path: Path, pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    host, port = PG_HOST.split(":")
    with psycopg.connect(host=host, port=port, user="postgres", dbname=dbname) as conn:
        for name, rows in expected().items():
            conn.execute(
                sql.SQL("CREATE TABLE {} ({} text, {} integer)").format(
                    sql.Identifier(name), sql.Identifier(name), sql.Identifier(name + " 2")
                )
            )
            conn.execute(  # literals, not parameters: the names hold %
                sql.SQL("INSERT INTO {} SELECT {}, g FROM generate_series(1, {}) g").format(
                    sql.Identifier(name), sql.Literal(name), sql.Literal(rows)
                )
            )
    store = tmp_path / "store"
    manifest = run_backup(cli, pg_url, store)
    # A dotted public name is a quoted key (pgdump.count_key): "a.b" would be table b of a.
    want = {('"a.b"' if n == "a.b" else n): rows for n, rows in expected().items()}
    assert manifest["row_counts"] == want
    verified = json_of(
        cli("backup", "verify", manifest["id"], "--store", str(store), "--db", pg_url, "--json")
    )
    assert verified[0]["ok"] is True, verified
