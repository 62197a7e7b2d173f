"""Session 10's hostile inputs: SQLite files shaped like real frameworks and apps write them
(Django, Sequelize, TypeORM, Prisma, Rails, Room, Core Data, Home Assistant, Firefox), wide
tables, and values at the edges of what each type holds. Every migration that exits 0 is
also compared row by row and value by value, independently of verify
(tests/migrate/campaign10_compare.py)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.campaign10_compare import assert_same_rows
from tests.migrate.conftest import migrated_ok, pg, script_db

KINDS = ["INTEGER", "TEXT", "REAL", "BLOB", ""]


def _wide(path: Path, columns: int, rows: int, kinds: list[str]) -> Path:
    conn = sqlite3.connect(path)
    decl = ", ".join(f"c{i} {kinds[i % len(kinds)]}" for i in range(columns))
    conn.execute(f"CREATE TABLE wide (id INTEGER PRIMARY KEY, {decl})")
    for r in range(rows):
        values = []
        for i in range(columns):
            kind = kinds[i % len(kinds)]
            values.append(
                None
                if (r + i) % 7 == 0
                else {
                    "INTEGER": r * i,
                    "TEXT": f"t{r}\t{i}",
                    "REAL": i / 3,
                    "BLOB": bytes([i % 256, r]),
                    "": i,
                }[kind]
            )
        conn.execute(f"INSERT INTO wide VALUES ({r}, {', '.join('?' * columns)})", values)
    conn.commit()
    conn.close()
    return path


def test_a_table_of_hundreds_of_columns_copies_and_verifies(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # the COPY line and the row hash were one chain of || over every column, nested deeper
    # than SQLite's 1000 levels: run failed with 'unexpected OperationalError: Expression
    # tree is too large' after plan said exit 0
    db = _wide(tmp_path / "wide.db", 700, 30, KINDS)
    migrated_ok(cli, f"sqlite:///{db}", pg_url)
    assert assert_same_rows(db, pg_url, "wide", "id") == 30


def test_a_table_past_2000_profile_aggregates_and_rows_too_big_for_a_page(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # 1,590 columns: the profile asked SQLite for more than 2,000 result columns in one query
    # ('unexpected OperationalError: too many columns in result set' from plan and run); and
    # a row of 1,100 non-NULL bigints is past PostgreSQL's 8,160 bytes per row, which COPY
    # refused ('row is too big') with a hint that the connection was lost, after plan's exit 0
    db = _wide(tmp_path / "wider.db", 1590, 6, ["INTEGER", "INTEGER", "TEXT"])
    url = f"sqlite:///{db}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    failures = json.loads(plan.stdout)["schema_failures"]
    assert [(f["kind"], f["table"]) for f in failures] == [("row-size", "wide")]
    assert "over its limit of 8160 for one row" in failures[0]["error"]
    assert "split the table" in failures[0]["hint"]
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject")
    assert run.exit_code == 3, run.stdout + run.stderr
    assert "row is too big" in run.stderr and "connection" not in run.stderr
    assert "split the table" in run.stderr
    # rows that fit are not the ones rejected: nothing went to a reject file by a wrong line
    assert not list(tmp_path.glob("*.jsonl")) or all(
        p.read_text() == "" for p in tmp_path.glob("*.jsonl")
    )


def test_a_wide_table_whose_rows_fit_is_not_flagged(cli, tmp_path: Path, pg_url: str) -> None:
    # the row-size check is a lower bound: 700 columns of mostly short text fit a page, as do
    # 1,590 columns mostly NULL
    db = _wide(tmp_path / "fits.db", 700, 4, ["TEXT", "TEXT", "TEXT", "INTEGER"])
    migrated_ok(cli, f"sqlite:///{db}", pg_url)
    assert assert_same_rows(db, pg_url, "wide", "id") == 4
    sparse = tmp_path / "sparse.db"
    conn = sqlite3.connect(sparse)
    conn.execute(
        f"CREATE TABLE s (id INTEGER PRIMARY KEY, {', '.join(f'c{i} INT' for i in range(1590))})"
    )
    conn.execute("INSERT INTO s (id, c0, c1589) VALUES (1, 5, 6), (2, NULL, 7)")
    conn.commit()
    conn.close()
    plan = cli("migrate-db", "plan", "--from", f"sqlite:///{sparse}", "--to", pg_url)
    assert plan.exit_code == 0, plan.stdout + plan.stderr


def test_infinity_in_unconstrained_numeric_columns(cli, tmp_path: Path, pg_url: str) -> None:
    # NUMERIC, DECIMAL and MONEY without a precision take Infinity in PostgreSQL (14+), and
    # the copy loaded it; verify's canonical text refused it ('1 rows cannot be converted
    # now'), so plan said exit 0 and run exited 3 naming a row that was there
    db = tmp_path / "inf.db"
    conn = sqlite3.connect(db)
    conn.execute(
        "CREATE TABLE m (id INTEGER PRIMARY KEY, n NUMERIC, m MONEY, d DECIMAL, "
        "x NUMERIC NOT NULL, r REAL)"
    )
    inf = float("inf")
    conn.executemany(
        "INSERT INTO m VALUES (?, ?, ?, ?, ?, ?)",
        [
            (1, inf, -inf, 1.5, inf, -inf),
            (2, 0.1, 3, None, 2, 0.0),
            (3, -0.0, 1e300, -inf, 1e-7, inf),
        ],
    )
    conn.commit()
    conn.close()
    migrated_ok(cli, f"sqlite:///{db}", pg_url)
    assert assert_same_rows(db, pg_url, "m", "id") == 3
    with pg(pg_url) as c:
        assert c.execute("SELECT n::text, m::text FROM m WHERE id = 1").fetchone() == (
            "Infinity",
            "-Infinity",
        )


def test_infinity_in_a_numeric_with_precision_is_an_anomaly(
    cli, tmp_path: Path, pg_url: str
) -> None:
    url = script_db(
        tmp_path / "infp.db",
        "CREATE TABLE m (id INTEGER PRIMARY KEY, d DECIMAL(10,2));"
        "INSERT INTO m VALUES (1, 9e999), (2, 1.25);",
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    assert "column d: values with more than 2 decimals or 8 integer digits" in plan.stderr


ENUMS = """
CREATE TABLE e (id INTEGER PRIMARY KEY, status "ENUM('draft','published')", kind "SET",
                label STRING, shape GEOMETRY, year YEAR, price SMALLMONEY, code NUMBER);
INSERT INTO e VALUES (1, 'draft', 'a,b', 'hello', x'0102', 2024, 9.5, 7),
                     (2, 'published', NULL, 'world', x'', 1999, 10, 8);
"""


def test_declared_types_naming_no_number_follow_their_values(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # ENUM('a','b') (MySQL dumps), SET, STRING, GEOMETRY have NUMERIC affinity in SQLite but
    # hold text or blobs: plan flagged every value as 'text values in a numeric column'
    url = script_db(tmp_path / "enum.db", ENUMS)
    plan = migrated_ok(cli, url, pg_url)
    types = {c["source"]: c["pg_type"] for c in plan["tables"][0]["columns"]}
    assert types == {
        "id": "bigint",
        "status": "text",
        "kind": "text",
        "label": "text",
        "shape": "bytea",
        "year": "numeric",
        "price": "numeric",
        "code": "numeric",
    }
    assert assert_same_rows(tmp_path / "enum.db", pg_url, "e", "id") == 2


def test_a_string_column_sqlite_turned_partly_into_numbers_names_the_mix(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # STRING has NUMERIC affinity: '00123' was stored as the integer 123; the anomaly said
    # 'text values in a numeric column' about a column of strings
    url = script_db(
        tmp_path / "mix.db",
        "CREATE TABLE s (id INTEGER PRIMARY KEY, label STRING);"
        "INSERT INTO s VALUES (1, 'abc'), (2, '00123');",
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url)
    assert plan.exit_code == 3
    assert "mixed value types (integer, text)" in plan.stderr
    assert 'type = "text"' in plan.stderr
