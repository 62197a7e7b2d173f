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


WORDPRESS = """
CREATE TABLE wp_posts (ID integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  post_author integer NOT NULL DEFAULT '0',
  post_date text NOT NULL DEFAULT '0000-00-00 00:00:00' COLLATE NOCASE,
  post_date_gmt text NOT NULL DEFAULT '0000-00-00 00:00:00' COLLATE NOCASE,
  post_content text NOT NULL COLLATE NOCASE, comment_count integer NOT NULL DEFAULT '0');
INSERT INTO wp_posts (post_author, post_date, post_date_gmt, post_content)
VALUES (1, '2024-01-01 10:00:00', '2024-01-01 09:00:00', 'Hello'),
       (1, '2024-01-02 10:00:00', '2024-01-02 09:00:00', 'World');
"""


def test_a_text_column_of_timestamps_whose_default_is_not_one_stays_text(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # WordPress on SQLite: every post_date is a timestamp, the default '0000-00-00 00:00:00'
    # is not; the column became timestamptz and the default an anomaly (plan exit 3)
    url = script_db(tmp_path / "wp.db", WORDPRESS)
    plan = migrated_ok(cli, url, pg_url)
    assert any("post_date: values are all timestamps" in n for n in plan["notes"]), plan["notes"]
    assert assert_same_rows(tmp_path / "wp.db", pg_url, "wp_posts", "ID") == 2
    with pg(pg_url) as conn:
        conn.execute("INSERT INTO wp_posts (post_author, post_content) VALUES (2, 'x')")
        assert conn.execute(
            'SELECT post_date, post_date_gmt FROM wp_posts WHERE "ID" = 3'
        ).fetchone() == (
            "0000-00-00 00:00:00",
            "0000-00-00 00:00:00",
        )


def test_reject_mode_does_not_drop_a_default_without_an_equivalent(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # run --on-error reject started, created the columns without their defaults and exited 0
    # with 'verify ok': a default is no row, nothing was rejected, the schema changed silently
    url = script_db(
        tmp_path / "def.db",
        "CREATE TABLE p (id INTEGER PRIMARY KEY, b DATETIME NOT NULL DEFAULT '0000-00-00 00:00:00',"
        " f DATETIME DEFAULT 0);"
        "INSERT INTO p VALUES (1, '2024-01-01 10:00:00', '2024-01-01 10:00:00');",
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3
    anomalies = json.loads(plan.stdout)["anomalies"]
    # the example is the default itself, not a row that holds nothing wrong
    assert [(a["column"], a["key"], a["value"]) for a in anomalies] == [
        ("b", None, "'0000-00-00 00:00:00'"),
        ("f", None, "0"),
    ]
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject")
    assert run.exit_code == 3, run.stdout + run.stderr
    assert "2 column default(s) have no PostgreSQL equivalent" in run.stderr
    assert 'default = ""' in run.stderr
    with pg(pg_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)
    casts = tmp_path / "casts.toml"
    casts.write_text('[p.b]\ndefault = ""\n[p.f]\ndefault = "now()"\n')
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stdout + run.stderr


def test_untyped_integers_past_2_to_the_53_beside_reals_are_kept_exactly(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # an untyped column of integers and reals became double precision: 9007199254740993
    # arrived as 9007199254740992 and -2^63 + 1 as -2^63, with exit 0 and 'verify ok' (both
    # sides hashed the same double)
    url = script_db(
        tmp_path / "big.db",
        "CREATE TABLE u (id INTEGER PRIMARY KEY, v, small);"
        "INSERT INTO u VALUES (1, 9007199254740993, 1), (2, 1.5, 2.5),"
        " (3, -9223372036854775807, 9007199254740992), (4, 9223372036854775807, NULL);",
    )
    plan = migrated_ok(cli, url, pg_url)
    types = {c["source"]: c["pg_type"] for c in plan["tables"][0]["columns"]}
    # within 2^53 a double holds every integer: those columns stay double precision
    assert types == {"id": "bigint", "v": "numeric", "small": "double precision"}
    assert assert_same_rows(tmp_path / "big.db", pg_url, "u", "id") == 4
    with pg(pg_url) as conn:
        assert conn.execute("SELECT v::text FROM u ORDER BY id").fetchall() == [
            ("9007199254740993",),
            ("1.5",),
            ("-9223372036854775807",),
            ("9223372036854775807",),
        ]


def test_values_a_cast_rule_cannot_convert_fail_the_plan_not_the_run(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # plan took a cast rule on trust (exit 0); run then stopped at the first value the rule's
    # conversion refused (exit 3 after the backup and the table creation)
    url = script_db(
        tmp_path / "rules.db",
        "CREATE TABLE e (id INTEGER PRIMARY KEY, n TEXT, b TEXT, d TEXT, ok TEXT);"
        "INSERT INTO e VALUES (1, '42', 'yes', '2024-01-01', '7'), (2, 'abc', 'maybe', 'x', '8'),"
        " (3, 'abc', 't', '2024-02-30', '-9');",
    )
    casts = tmp_path / "rules.toml"
    casts.write_text(
        '[e.n]\ntype = "bigint"\n[e.b]\ntype = "boolean"\n[e.d]\ntype = "date"\n'
        '[e.ok]\ntype = "bigint"\n'
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts), "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    found = [
        (a["column"], a["condition"], a["count"], a["key"], a["value"])
        for a in json.loads(plan.stdout)["anomalies"]
    ]
    assert found == [
        ("n", "rule", 2, {"rowid": 2}, "abc"),
        ("b", "rule", 1, {"rowid": 2}, "maybe"),
        ("d", "rule", 2, {"rowid": 3}, "2024-02-30"),
    ]
    run = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts),
        "--on-error", "reject", "--reject-file", str(tmp_path / "rej.jsonl"),
    )  # fmt: skip
    assert run.exit_code == 3, run.stdout + run.stderr
    rejected = [json.loads(line) for line in (tmp_path / "rej.jsonl").read_text().splitlines()]
    assert sorted(r["key"] for r in rejected) == [2, 3]
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id, n, b, d, ok FROM e").fetchall() == [
            (1, 42, True, __import__("datetime").date(2024, 1, 1), 7)
        ]


def test_an_epoch_rule_keeps_the_iso_timestamps_beside_the_numbers(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # apps that switched from ISO text to epoch numbers leave both in one column; an epoch
    # rule refused the text (run exit 3 after plan's exit 0), and no rule covered both
    url = script_db(
        tmp_path / "mixed.db",
        "CREATE TABLE e (id INTEGER PRIMARY KEY, at DATETIME);"
        "INSERT INTO e VALUES (1, '2024-01-01T10:00:00Z'), (2, 1700000000),"
        " (3, '2024-01-01 12:00:00.5+02:00'), (4, 1700000000.25), (5, NULL);",
    )
    casts = tmp_path / "epoch.toml"
    casts.write_text('[e.at]\nepoch = "s"\n')
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stdout + run.stderr
    with pg(pg_url) as conn:
        got = conn.execute(
            "SELECT to_char(at, 'YYYY-MM-DD HH24:MI:SS.US') FROM e ORDER BY id"
        ).fetchall()
    assert got == [
        ("2024-01-01 10:00:00.000000",),
        ("2023-11-14 22:13:20.000000",),
        ("2024-01-01 10:00:00.500000",),
        ("2023-11-14 22:13:20.250000",),
        (None,),
    ]
    # RFC 2822 text is no ISO timestamp: named by plan
    script_db(tmp_path / "mixed.db", "INSERT INTO e VALUES (6, 'Mon, 01 Jan 2024 10:00:00 +0000');")
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert plan.exit_code == 3
    assert "nor an ISO-8601 timestamp: 'Mon, 01 Jan 2024" in plan.stdout + plan.stderr


def test_a_numeric_rule_takes_the_text_postgresql_reads(cli, tmp_path: Path, pg_url: str) -> None:
    # Python's Decimal accepted '1_000', 'sNaN' and Arabic-Indic digits, which PostgreSQL's
    # numeric refuses: plan passed them and the COPY failed
    url = script_db(
        tmp_path / "num.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, amount TEXT);"
        "INSERT INTO t VALUES (1, ' 12.50 '), (2, '1_000'), (3, 'NaN'), (4, '-inf'), (5, '+.5'),"
        " (6, 'sNaN'), (7, '١٢'), (8, '1e3');",
    )
    casts = tmp_path / "num.toml"
    casts.write_text('[t.amount]\ntype = "numeric"\n')
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts), "--json")
    assert plan.exit_code == 3
    [anomaly] = json.loads(plan.stdout)["anomalies"]
    assert (anomaly["condition"], anomaly["count"]) == ("rule", 3)
    run = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts),
        "--on-error", "reject", "--reject-file", str(tmp_path / "rej.jsonl"),
    )  # fmt: skip
    assert run.exit_code == 3, run.stdout + run.stderr
    assert "3 row(s) rejected" in run.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id, amount::text FROM t ORDER BY id").fetchall() == [
            (1, "12.50"),
            (3, "NaN"),
            (4, "-Infinity"),
            (5, "0.5"),
            (8, "1000"),
        ]
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr  # the journaled rejects skipped


def test_a_timestamptz_rule_over_iso_shapes_postgresql_does_not_read(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # the converter checked the text with Python (which reads week dates, an hour alone and
    # a comma before the fraction) and sent the text itself: plan exit 0, then the COPY
    # failed ('invalid input syntax for type timestamp with time zone')
    url = script_db(
        tmp_path / "iso.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, at TEXT);"
        "INSERT INTO t VALUES (1, '2024-W01-1T10:00'), (2, '2024-01-01T10'),"
        " (3, '2024-01-01 10:00:00,5'), (4, '20240101T100000'), (5, '2024-01-01 10:00:00 +05:30'),"
        " (6, 'Mon');",
    )
    casts = tmp_path / "ts.toml"
    casts.write_text('[t.at]\ntype = "timestamptz"\n')
    run = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts),
        "--on-error", "reject", "--reject-file", str(tmp_path / "rej.jsonl"),
    )  # fmt: skip
    assert run.exit_code == 3, run.stdout + run.stderr  # 'Mon' only
    assert "1 row(s) rejected" in run.stderr
    with pg(pg_url) as conn:
        got = conn.execute(
            "SELECT id, to_char(at, 'YYYY-MM-DD HH24:MI:SS.US') FROM t ORDER BY id"
        ).fetchall()
    assert got == [
        (1, "2024-01-01 10:00:00.000000"),
        (2, "2024-01-01 10:00:00.000000"),
        (3, "2024-01-01 10:00:00.500000"),
        (4, "2024-01-01 10:00:00.000000"),
        (5, "2024-01-01 04:30:00.000000"),
    ]
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr


def test_unique_keys_that_meet_once_converted_fail_the_plan(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # a BLOB column holding 'a' as text and x'61' as a blob (SQLite keeps them apart) cast to
    # bytea, or 1 and '1' cast to bigint: plan exit 0, then the run could not build the
    # unique indexes (exit 3)
    url = script_db(
        tmp_path / "uq.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, b BLOB UNIQUE, n UNIQUE, ok BLOB UNIQUE);"
        "INSERT INTO t VALUES (1, x'61', 1, x'61'), (2, 'a', '1', 'b');",
    )
    casts = tmp_path / "uq.toml"
    casts.write_text('[t.b]\ntype = "bytea"\n[t.n]\ntype = "bigint"\n')
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts), "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    failures = json.loads(plan.stdout)["schema_failures"]
    assert [(f["kind"], f["sql"], f["hint"]) for f in failures] == [
        ("unique-data", "UNIQUE (b)", "make the values one type (one spelling) in the source"),
        (
            "unique-data",
            "UNIQUE (n)",
            "make the values one type (one spelling) in the source, or cast the column to bytea",
        ),
    ]


def test_two_spellings_of_one_key_fail_the_plan(cli, tmp_path: Path, pg_url: str) -> None:
    # a TEXT key of timestamps ('...T10:00:00Z' and '... 10:00:00'), UUIDs in two letter
    # cases, JSON with and without spaces, times with and without seconds: distinct text in
    # SQLite, one value in PostgreSQL; plan exit 0, then the run's keys failed (exit 3)
    url = script_db(
        tmp_path / "spell.db",
        "CREATE TABLE ev (at TEXT PRIMARY KEY, v INT) WITHOUT ROWID;"
        "INSERT INTO ev VALUES ('2024-01-01T10:00:00Z', 1), ('2024-01-01 10:00:00', 2),"
        " ('2024-01-01 12:00:00+02:00', 3), ('2024-01-02 10:00:00', 4);"
        "CREATE TABLE u (id INTEGER PRIMARY KEY, g CHAR(32) UNIQUE, j JSON UNIQUE, t TIME UNIQUE,"
        " ok TEXT UNIQUE);"
        "INSERT INTO u VALUES (1, 'ABCDEF0123456789ABCDEF0123456789', '{\"a\":1}', '10:00', 'x'),"
        " (2, 'abcdef0123456789abcdef0123456789', '{\"a\": 1}', '10:00:00', 'X');",
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    failures = json.loads(plan.stdout)["schema_failures"]
    assert [(f["kind"], f["table"], f["sql"]) for f in failures] == [
        ("unique-data", "ev", "UNIQUE (at)"),
        ("unique-data", "u", "UNIQUE (g)"),
        ("unique-data", "u", "UNIQUE (j)"),
        ("unique-data", "u", "UNIQUE (t)"),
    ]
    assert failures[0]["error"].startswith("1 key value(s)")  # 10:00 UTC three ways: one key
    assert 'type = "text" keeps each spelling' in failures[0]["hint"]


def test_a_target_whose_search_path_names_no_schema(cli, tmp_path: Path, pg_url: str) -> None:
    # ALTER DATABASE ... SET search_path to a schema that is not there (or public dropped):
    # plan tried its statements in a scratch schema and said exit 0; run failed with
    # 'unexpected InvalidSchemaName: no schema has been selected to create in'
    url = script_db(tmp_path / "s.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
    db = pg_url.rsplit("/", 1)[1]
    with pg(pg_url) as conn:
        conn.execute(f'ALTER DATABASE "{db}" SET search_path = nowhere')
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url)
    assert plan.exit_code == 1, plan.stdout + plan.stderr
    assert "no schema to create the tables in (search_path = nowhere)" in plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 1 and "unexpected" not in run.stderr, run.stderr
    assert "SET search_path" in run.stderr


def test_plan_without_create_on_the_schema_says_so_as_run_does(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # CREATE on the database (the plan's scratch schema) but not on public (PostgreSQL 15's
    # default for other roles): plan exit 0, run exit 1 ('cannot create the migration journal')
    url = script_db(tmp_path / "s.db", "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")
    role = f"c10_{tmp_path.name[-8:].replace('-', '_')}".lower()
    db = pg_url.rsplit("/", 1)[1]
    with pg(pg_url) as conn:
        conn.execute(f'CREATE ROLE "{role}" LOGIN')
        conn.execute(f'GRANT CONNECT, CREATE ON DATABASE "{db}" TO "{role}"')
        conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    try:
        target = pg_url.replace("postgres@", f"{role}@")
        plan = cli("migrate-db", "plan", "--from", url, "--to", target)
        assert plan.exit_code == 1, plan.stdout + plan.stderr
        assert "permission denied for schema public" in plan.stderr
        assert "GRANT CREATE ON SCHEMA public" in plan.stderr
    finally:
        with pg(pg_url) as conn:
            conn.execute(f'REVOKE ALL ON DATABASE "{db}" FROM "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


def test_a_uuid_column_of_16_byte_blobs_is_bytea(cli, tmp_path: Path, pg_url: str) -> None:
    # System.Data.SQLite and Core Data store GUIDs as 16-byte blobs in a column declared
    # UUID/GUID: plan flagged each as 'blob values in a numeric column'
    db = tmp_path / "guid.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, g GUID NOT NULL, u UUID)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?)",
        [(1, bytes(range(16)), None), (2, bytes(range(16, 32)), b"\xff" * 16)],
    )
    conn.commit()
    conn.close()
    plan = migrated_ok(cli, f"sqlite:///{db}", pg_url)
    types = {c["source"]: c["pg_type"] for c in plan["tables"][0]["columns"]}
    assert types == {"id": "bigint", "g": "bytea", "u": "bytea"}
    assert assert_same_rows(db, pg_url, "t", "id") == 2


def test_rule_anomalies_name_json_text_and_infinities(cli, tmp_path: Path, pg_url: str) -> None:
    # the first refused value is shown from its row: a value with braces or an infinity
    # must not break that lookup ('unexpected KeyError', 'no such column: inf')
    db = tmp_path / "odd.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, j TEXT, r)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?)", [(1, '{"a": 1}', float("inf")), (2, "{x}", 1)]
    )
    conn.commit()
    conn.close()
    casts = tmp_path / "odd.toml"
    casts.write_text('[t.j]\ntype = "bigint"\n[t.r]\ntype = "boolean"\n')
    jsonb = tmp_path / "jsonb.toml"  # an infinity is no JSON number: the COPY refused it
    jsonb.write_text('[t.j]\ntype = "text"\n[t.r]\ntype = "jsonb"\n')
    plan = cli("migrate-db", "plan", "--from", str(db), "--to", pg_url, "--cast", str(jsonb))
    assert plan.exit_code == 3 and "JSON has no infinite numbers: inf" in plan.stderr
    plan = cli(
        "migrate-db", "plan", "--from", str(db), "--to", pg_url, "--cast", str(casts), "--json"
    )
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    found = [(a["column"], a["key"], a["value"]) for a in json.loads(plan.stdout)["anomalies"]]
    assert found == [("j", {"rowid": 1}, '{"a": 1}'), ("r", {"rowid": 1}, "Inf")]


def test_index_keys_past_the_btree_limit_fail_the_plan(cli, tmp_path: Path, pg_url: str) -> None:
    # a UNIQUE url of 6 kB and an indexed 4 kB blob: plan exit 0 (its trial builds the
    # indexes on empty tables), then the run's CREATE INDEX failed ('index row size 6024
    # exceeds btree version 4 maximum 2704'), exit 3 with the objects missing
    import random as _random

    rng = _random.Random(5)
    db = tmp_path / "ix.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, url TEXT UNIQUE, body TEXT, tag BLOB)")
    conn.execute("CREATE INDEX t_body ON t (body)")
    conn.execute("CREATE INDEX t_tag ON t (tag) WHERE id > 0")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?)",
        [
            (1, "https://x/" + rng.randbytes(3000).hex(), "short", rng.randbytes(4000)),
            # 100 kB that compresses to a few hundred bytes: PostgreSQL indexes it
            (2, "a", "x" * 100_000, b""),
        ],
    )
    conn.commit()
    conn.close()
    plan = cli("migrate-db", "plan", "--from", str(db), "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    failures = json.loads(plan.stdout)["schema_failures"]
    assert [(f["kind"], f["name"]) for f in failures] == [
        ("index-size", "sqlite_autoindex_t_1"),
        ("index-size", "t_tag"),
    ]
    assert "key of url of at least" in failures[0]["error"] and "rowid=1" in failures[0]["error"]
    assert "md5(col)" in failures[0]["hint"]


def test_names_differing_only_in_non_ascii_case_are_not_confused_in_views(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # SQLite folds only ASCII letters: "Äpfel" and "äpfel" are two tables, "Ä" and "ä" two
    # columns. The translation folded them together: the view read the other table and its
    # columns became string literals ('Ä'), with run and verify at exit 0
    url = script_db(
        tmp_path / "umlaut.db",
        'CREATE TABLE "Äpfel" (id INTEGER PRIMARY KEY, "Ä" TEXT, "ä" INTEGER, "Σ" TEXT, "σ" TEXT);'
        'CREATE TABLE "äpfel" (id INTEGER PRIMARY KEY, v TEXT);'
        'CREATE VIEW v AS SELECT "Ä", "ä", "σ" FROM "Äpfel";'
        'CREATE VIEW w AS SELECT v FROM "äpfel";'
        "INSERT INTO \"Äpfel\" VALUES (1, 'upper', 5, 'SIGMA', 'sigma');"
        "INSERT INTO \"äpfel\" VALUES (1, 'lower table');",
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        assert conn.execute("SELECT * FROM v").fetchall() == [("upper", 5, "sigma")]
        assert conn.execute("SELECT * FROM w").fetchall() == [("lower table",)]


def test_indexes_over_columns_differing_only_in_non_ascii_case(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # the column map was keyed by str.lower(): a UNIQUE index on ("Ä", id) was built on
    # ("ä", id), and the UNIQUE on "Ä" failed on the duplicates of "ä" (exit 3); without
    # such duplicates the wrong index would have passed silently
    url = script_db(
        tmp_path / "ix.db",
        'CREATE TABLE t (id INTEGER PRIMARY KEY, "Ä" TEXT UNIQUE, "ä" INTEGER);'
        'CREATE INDEX t_a ON t ("ä");'
        'CREATE UNIQUE INDEX t_a2 ON t ("Ä", id);'
        "INSERT INTO t VALUES (1, 'x', 5), (2, 'y', 5);",
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        defs = dict(
            conn.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 't'"
            ).fetchall()
        )
    assert defs["t_a2"].endswith('("Ä", id)'), defs
    assert defs["t_a"].endswith('("ä")'), defs
    assert any(
        d.endswith('UNIQUE INDEX "t_Ä_key" ON public.t USING btree ("Ä")') for d in defs.values()
    ), defs


def test_json_documents_sqlite_stored_as_numbers(cli, tmp_path: Path, pg_url: str) -> None:
    # SQLAlchemy's JSON type declares JSON (NUMERIC affinity): the documents '5' and '1.5'
    # were stored as the numbers 5 and 1.5, and plan called them 'values that are not valid
    # JSON' (exit 3)
    url = script_db(
        tmp_path / "json.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, j JSON);"
        "INSERT INTO t VALUES (1, '{\"a\":1}'), (2, '5'), (3, '1.5'), (4, 'true'), (5, 'null'),"
        " (6, NULL), (7, '-12');",
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        got = conn.execute("SELECT id, j::text, jsonb_typeof(j) FROM t ORDER BY id").fetchall()
    assert got == [
        (1, '{"a": 1}', "object"),
        (2, "5", "number"),
        (3, "1.5", "number"),
        (4, "true", "boolean"),
        (5, "null", "null"),
        (6, None, None),
        (7, "-12", "number"),
    ]
    # an infinity (the document 1e400 as SQLite stored it) is no JSON: still an anomaly
    script_db(tmp_path / "json.db", "INSERT INTO t VALUES (8, 9e999);")
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url)
    assert plan.exit_code == 3 and "values that are not valid JSON" in plan.stderr


def test_a_text_rule_over_blobs_names_the_ones_that_are_no_text(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # a type = "text" rule decodes blobs as UTF-8: a blob holding a NUL byte (or bytes that
    # are not UTF-8) passed plan and stopped the run (exit 3)
    db = tmp_path / "blobs.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, c CLOB)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?)",
        [(1, "text"), (2, b"bytes"), (3, b"\x00\x01"), (4, b"\xff\xfe")],
    )
    conn.commit()
    conn.close()
    casts = tmp_path / "text.toml"
    casts.write_text('[t.c]\ntype = "text"\n')
    plan = cli(
        "migrate-db", "plan", "--from", str(db), "--to", pg_url, "--cast", str(casts), "--json"
    )
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    [anomaly] = json.loads(plan.stdout)["anomalies"]
    assert (anomaly["condition"], anomaly["count"]) == ("rule", 2)
