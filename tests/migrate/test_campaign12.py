"""Session 12's hostile inputs: data shapes and schema shapes earlier campaigns did not cover.
Each migration that exits 0 is compared row by row with the source, independently of verify
(tests/migrate/campaign10_compare.py); the source's SHA-256 is checked after every command."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.migrate.campaign10_compare import assert_same_rows
from tests.migrate.conftest import migrated_ok, pg, script_db, sha256
from tests.migrate.test_resume import _start_run


def _plan(cli, url: str, pg_url: str, *extra: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    res = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json", *extra)
    assert "unexpected" not in res.stderr, res.stderr
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}


# Invalid UTF-8 as the first value of a text column: the probes that decide whether a column
# holds timestamps or UUIDs fetched it as str ("unexpected OperationalError: Could not decode
# to UTF-8", plan and run exit 1). Each shape of bad UTF-8: a lone surrogate, a truncated
# sequence, a byte UTF-8 never uses, an overlong encoding, a code point past U+10FFFF.
@pytest.mark.parametrize("bad", ["eda080", "c3", "ff", "c0af", "f4908080"])
def test_invalid_utf8_as_the_first_value_is_an_anomaly(
    cli, tmp_path: Path, pg_url: str, bad: str
) -> None:
    db = tmp_path / "u.db"
    url = script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, g CHAR(32), d DATETIME, u UUID);"
        f"INSERT INTO t VALUES (1, CAST(x'{bad}' AS TEXT), CAST(x'{bad}' AS TEXT), "
        f"CAST(x'{bad}' AS TEXT), CAST(x'{bad}' AS TEXT));"
        "INSERT INTO t VALUES (2, 'ok', '0123456789abcdef0123456789abcdef', "
        "'2024-01-01 10:00:00', '123e4567-e89b-12d3-a456-426614174000');",
    )
    before = sha256(db)
    code, plan = _plan(cli, url, pg_url)
    assert code == 3
    flagged = {(a["column"], a["condition"]) for a in plan["anomalies"]}
    assert ("s", "bad_utf8") in flagged
    rejects = tmp_path / "rejects.jsonl"
    run = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url,
        "--on-error", "reject", "--reject-file", str(rejects),
    )  # fmt: skip
    assert run.exit_code == 3, run.stdout + run.stderr
    assert "unexpected" not in run.stderr
    lines = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert [(r["table"], r["key"]) for r in lines] == [("t", 1)]
    with pg(pg_url) as c:
        assert c.execute("SELECT id, s FROM t").fetchall() == [(2, "ok")]
    assert sha256(db) == before


# Year 0000 (which PostgreSQL's date and timestamptz do not have) in a DATE or DATETIME column:
# the profile's `c >= '0001'` met the column's NUMERIC affinity, so it compared the number 1,
# which every text is greater than; plan said exit 0 and the copy failed (exit 3).
@pytest.mark.parametrize(
    ("declared", "value"),
    [
        ("DATE", "0000-01-01"),
        ("DATETIME", "0000-01-01 00:00:00"),
        ("TIMESTAMP", "0000-12-31T23:59:59Z"),
    ],
)
def test_year_zero_in_a_date_or_timestamp_column_is_an_anomaly(
    cli, tmp_path: Path, pg_url: str, declared: str, value: str
) -> None:
    url = script_db(
        tmp_path / "y0.db",
        f"CREATE TABLE t (id INTEGER PRIMARY KEY, d {declared});"
        f"INSERT INTO t VALUES (1, '{value}'), (2, '2024-01-01');",
    )
    code, plan = _plan(cli, url, pg_url)
    assert code == 3
    assert [(a["column"], a["count"], a["key"]) for a in plan["anomalies"]] == [
        ("d", 1, {"rowid": 1})
    ]
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 3 and "do not fit the plan" in run.stderr, run.stderr


# SQLite finds a foreign key's parent table ignoring ASCII case (REFERENCES USERS(ID) is the
# table "Users"); plan skipped such a key as "to missing table USERS" and the run and verify
# exited 0 without it: the target accepted orphans SQLite (foreign_keys on) refuses.
def test_a_foreign_key_naming_its_parent_in_another_case_is_kept(
    cli, tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "case.db"
    url = script_db(
        db,
        "CREATE TABLE Users (id INTEGER PRIMARY KEY, Name TEXT);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
        "user_id INTEGER REFERENCES USERS(ID), owner INT REFERENCES users);"
        "INSERT INTO Users VALUES (1, 'a'); INSERT INTO orders VALUES (1, 1, 1);",
    )
    plan = migrated_ok(cli, url, pg_url)
    assert not [n for n in plan["notes"] if "foreign key" in n], plan["notes"]
    assert assert_same_rows(db, pg_url, "orders", "id") == 1
    with pg(pg_url) as c:
        fks = c.execute(
            "SELECT conname, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND convalidated ORDER BY 1"
        ).fetchall()
        assert [ref for _n, ref in fks] == ['"Users"', '"Users"']


def _rewrite_schema(db: Path, table: str, create: str) -> None:
    """Replace a table's CREATE statement in place, as an old app version or a hand fix with
    writable_schema does: the rows already there are not checked against it."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = ? WHERE name = ?", (create, table))
    conn.commit()
    conn.close()


# NULLs in a column declared NOT NULL (SQLite checks it on writes only: rows written before the
# constraint keep their NULLs). The profile counted them with `c IS NULL`, which SQLite folds
# to false for a NOT NULL column: plan exit 0, then the copy stopped at the first such row.
def test_nulls_in_a_not_null_column_are_an_anomaly(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "nn.db"
    script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INT, s TEXT, r REAL, b BOOLEAN, u);"
        "INSERT INTO t VALUES (1, NULL, 'a', 1.5, 1, 'x'), (2, 5, NULL, NULL, NULL, NULL),"
        "(3, 6, 'c', 2.5, 0, 'z');",
    )
    _rewrite_schema(
        db,
        "t",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, n INT NOT NULL, s TEXT NOT NULL DEFAULT 'x', "
        "r REAL NOT NULL, b BOOLEAN NOT NULL, u NOT NULL)",
    )
    url = f"sqlite:///{db}"
    before = sha256(db)
    code, plan = _plan(cli, url, pg_url)
    assert code == 3
    assert sorted((a["column"], a["count"], a["key"]["rowid"]) for a in plan["anomalies"]) == [
        ("b", 1, 2),
        ("n", 1, 1),
        ("r", 1, 2),
        ("s", 1, 2),
        ("u", 1, 2),
    ]
    assert all("NOT NULL" in a["message"] for a in plan["anomalies"])
    rejects = tmp_path / "rejects.jsonl"
    run = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url,
        "--on-error", "reject", "--reject-file", str(rejects),
    )  # fmt: skip
    assert run.exit_code == 3, run.stdout + run.stderr
    assert sorted(json.loads(x)["key"] for x in rejects.read_text().splitlines()) == [1, 2]
    with pg(pg_url) as c:
        assert c.execute("SELECT id, n, s, r, b, u FROM t").fetchall() == [
            (3, 6, "c", 2.5, False, "z")
        ]
    assert sha256(db) == before


# sqlite_sequence is an ordinary table that tools and hand fixes write: a seq of text ('100')
# ended plan and run in "unexpected TypeError: '>' not supported between instances of 'int'
# and 'str'", a real (200.5) made a setval() PostgreSQL refused (plan exit 3, run exit 3). The
# next key on PostgreSQL must be the one SQLite itself would hand out (asked of a copy).
@pytest.mark.parametrize(
    "fix",
    [
        "UPDATE sqlite_sequence SET seq = '100'",
        "UPDATE sqlite_sequence SET seq = 200.5",
        "UPDATE sqlite_sequence SET seq = NULL",
        "UPDATE sqlite_sequence SET seq = 'abc'",
        "INSERT INTO sqlite_sequence VALUES ('t', 500)",
        "UPDATE sqlite_sequence SET seq = 100; DELETE FROM t WHERE id = 3",
    ],
)
def test_odd_sqlite_sequence_values_continue_as_sqlite_would(
    cli, tmp_path: Path, pg_url: str, fix: str
) -> None:
    db = tmp_path / "seq.db"
    url = script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);"
        f"INSERT INTO t (v) VALUES ('a'), ('b'), ('c'); {fix};",
    )
    oracle = tmp_path / "oracle.db"
    oracle.write_bytes(db.read_bytes())
    with sqlite3.connect(oracle) as conn:
        sqlite_next = conn.execute("INSERT INTO t (v) VALUES ('new') RETURNING id").fetchone()[0]
    conn.close()
    migrated_ok(cli, url, pg_url)
    assert assert_same_rows(db, pg_url, "t", "id") == len(
        sqlite3.connect(db).execute("SELECT * FROM t").fetchall()
    )
    with pg(pg_url) as c:
        pg_next = c.execute("INSERT INTO t (v) VALUES ('new') RETURNING id").fetchone()[0]
    # a second row for one name: SQLite reads the first, the plan the largest (never a key
    # SQLite handed out before)
    assert pg_next == sqlite_next if "INSERT" not in fix else pg_next == 501


def _terminate_when(pg_url: str, proc: subprocess.Popen, prefix: str) -> None:
    """pg_terminate_backend every session of the target once one runs a query starting with
    ``prefix`` (as a server restart or a failover does)."""
    admin, dbname = pg_url.rsplit("/", 1)
    deadline = time.monotonic() + 90
    with pg(admin + "/postgres") as conn:
        while time.monotonic() < deadline and proc.poll() is None:
            seen = conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND state <> 'idle' "
                "AND query LIKE %s",
                (dbname, prefix.replace("%", "%%") + "%"),
            ).fetchone()
            if seen:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (dbname,),
                )
                return
            time.sleep(0.005)
    pytest.fail(f"no query starting {prefix!r} was seen")


def _big(path: Path) -> Path:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, a TEXT, b INT, c REAL, d TEXT)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) "
            "INSERT INTO m SELECT i, 'x' || (i * 7919 % 100003), i % 1000, i / 3.0, "
            "hex(randomblob(20)) FROM n"
        )
        for k, cols in enumerate(["a, d", "b, c", "c, b", "d, a"]):
            conn.execute(f"CREATE INDEX i{k} ON m ({cols})")
        conn.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, mid INT REFERENCES m (id))")
        conn.execute("INSERT INTO s SELECT id, id FROM m WHERE id % 3 = 0")
    conn.close()
    return path


# The server dropping the run's sessions (restart, failover, pg_terminate_backend) while it
# built indexes or verified: the build journaled the lost connection as the object's failure
# on the dead connection, and the run ended in "unexpected OperationalError: the connection is
# closed" (building) or "unexpected AdminShutdown" (verifying; a standalone verify too). Now
# each says the connection was lost, exit 1, and --resume completes the migration.
@pytest.mark.parametrize(
    "query",
    [
        "CREATE INDEX",
        pytest.param("ALTER TABLE", marks=pytest.mark.slow),
        pytest.param("SELECT count(*), coalesce", marks=pytest.mark.slow),
    ],
)
def test_sessions_terminated_while_building_or_verifying_then_resume(
    cli, tmp_path: Path, pg_url: str, query: str
) -> None:
    db = _big(tmp_path / "big.db")
    url = f"sqlite:///{db}"
    before = sha256(db)
    proc = _start_run(url, pg_url, tmp_path)
    try:
        _terminate_when(pg_url, proc, query)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "unexpected" not in text and "connection to PostgreSQL was lost" in text, text
    assert "--resume" in text
    resumed = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--resume")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    assert assert_same_rows(db, pg_url, "m", "id") == 200000
    assert assert_same_rows(db, pg_url, "s", "id") == 66666
    with pg(pg_url) as c:
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'm'").fetchone() == (5,)
        assert c.execute(
            "SELECT convalidated FROM pg_constraint WHERE contype = 'f'"
        ).fetchall() == [(True,)]
    if query.startswith("SELECT"):  # a standalone verify losing its sessions
        vproc = subprocess.Popen(
            [sys.executable, "-m", "emrops", "migrate-db", "verify", "--from", url, "--to", pg_url],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        _terminate_when(pg_url, vproc, query)
        _out, err = vproc.communicate(timeout=120)
        assert vproc.returncode == 1, err.decode()
        assert "unexpected" not in err.decode()
        assert "connection to PostgreSQL was lost while verifying" in err.decode()
    assert sha256(db) == before


# A BOOLEAN default written as the boolean text its values may hold ('yes', 'on', 'n'): the
# copy converted such values, but plan refused the same text as a default ("is not a
# boolean", exit 3, a cast rule asked for). New rows on PostgreSQL get SQLite's default.
def test_boolean_text_defaults_are_booleans(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "b.db"
    url = script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a BOOLEAN DEFAULT 'yes', b BOOL DEFAULT 'off',"
        " c BOOLEAN NOT NULL DEFAULT ' N ', d BOOLEAN DEFAULT 'On', e BOOLEAN DEFAULT 'true');"
        "INSERT INTO t (id, a) VALUES (1, 'no'); INSERT INTO t (id) VALUES (2);",
    )
    migrated_ok(cli, url, pg_url)
    assert assert_same_rows(db, pg_url, "t", "id") == 2
    with pg(pg_url) as c:
        c.execute("INSERT INTO t (id) VALUES (3)")
        assert c.execute("SELECT a, b, c, d, e FROM t WHERE id = 3").fetchone() == (
            True,
            False,
            False,
            True,
            True,
        )
