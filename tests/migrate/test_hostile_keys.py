"""Keys that are not what they look like: a column named ``rowid`` (or ``oid``, ``_rowid_``)
that is not the row id, and ``COLLATE NOCASE`` keys that citext would fold together.

Both were found by a hostile corpus, not by the issue's examples: a table with a ``rowid TEXT``
column made the SQL-built copy crash ("unexpected TypeError") and would have keyed rows by the
column's values; 'é' and 'É' are distinct keys under SQLite's ASCII-only NOCASE but one key
under citext, so `plan` said yes and `run` failed building the primary key."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from emrops.migrate.reflect import reflect, rowid_name
from tests.migrate.conftest import pg, sha256


def _db(path: Path, script: str, many: list[tuple[str, list[tuple]]] | None = None) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    for sql, rows in many or []:
        conn.executemany(sql, rows)
    conn.commit()
    conn.close()
    return path


SHADOW = """
CREATE TABLE t (rowid TEXT, v TEXT);
INSERT INTO t VALUES ('x', 'a'), ('x', 'b'), (NULL, 'c');
CREATE TABLE t2 ("ROWID" INTEGER, "_rowid_" INTEGER, v TEXT);
CREATE TABLE t3 (oid INTEGER PRIMARY KEY, rowid TEXT, _rowid_ TEXT);
INSERT INTO t3 VALUES (5, 'a', 'b'), (9, NULL, NULL);
"""
# t2 is big enough for several SQL-built chunks and split hashing; its ROWID column holds
# NULLs and one repeated value, so keying by it would lose or double rows
T2_ROWS = [(None if i % 3 == 0 else 7, i, f"v{i}") for i in range(30_000)]


def test_rowid_name_skips_names_taken_by_columns(tmp_path: Path) -> None:
    source = _db(tmp_path / "s.db", SHADOW)
    conn = sqlite3.connect(source)
    names = {t.name: rowid_name(t) for t in reflect(conn).tables}
    conn.close()
    # t3's oid is the INTEGER PRIMARY KEY, so it *is* the row id and oid may read it
    assert names == {"t": "_rowid_", "t2": "oid", "t3": "oid"}


def test_a_column_named_rowid_is_copied_and_verified_by_the_real_row_id(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "s.db", SHADOW, [("INSERT INTO t2 VALUES (?, ?, ?)", T2_ROWS)])
    before = sha256(source)
    url = f"sqlite:///{source}"
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--json")
    assert run.exit_code == 0, run.stderr
    assert "unexpected" not in run.stderr
    out = json.loads(run.stdout)
    assert out["rows"] == 3 + len(T2_ROWS) + 2
    with pg(pg_url) as conn:
        assert conn.execute("SELECT rowid, v FROM t ORDER BY v").fetchall() == [
            ("x", "a"),
            ("x", "b"),
            (None, "c"),
        ]
        got = conn.execute('SELECT count(*), count("ROWID"), sum("_rowid_") FROM t2').fetchone()
        assert got == (len(T2_ROWS), 20_000, sum(range(30_000)))
        assert conn.execute("SELECT oid, rowid, _rowid_ FROM t3 ORDER BY oid").fetchall() == [
            (5, "a", "b"),
            (9, None, None),
        ]
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    assert sha256(source) == before


def test_a_changed_row_behind_a_rowid_column_fails_verify(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(tmp_path / "s.db", SHADOW)
    url = f"sqlite:///{source}"
    assert cli("migrate-db", "run", "--from", url, "--to", pg_url).exit_code == 0
    with pg(pg_url) as conn:
        conn.execute("UPDATE t SET v = 'changed' WHERE v = 'b'")
        conn.commit()
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 3
    assert "t" in verify.stdout + verify.stderr


def test_all_three_row_id_names_hidden_is_a_clear_refusal(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(
        tmp_path / "hidden.db",
        "CREATE TABLE u (oid INTEGER, _rowid_ INTEGER, rowid INTEGER, v TEXT);"
        "INSERT INTO u VALUES (1, 1, 1, 'a'), (1, 1, 1, 'b');",
    )
    url = f"sqlite:///{source}"
    for command in ("plan", "run"):
        result = cli("migrate-db", command, "--from", url, "--to", pg_url)
        assert result.exit_code == 3, (command, result.stderr)
        assert "table u" in result.stderr and "hide SQLite's row id" in result.stderr
        assert "RENAME COLUMN" in result.stderr and "unexpected" not in result.stderr
    with pg(pg_url) as conn:  # nothing was created
        assert conn.execute("SELECT to_regclass('public.u')").fetchone() == (None,)


NOCASE = """
CREATE TABLE n (name TEXT PRIMARY KEY COLLATE NOCASE, v INTEGER);
INSERT INTO n VALUES ('abc', 1), ('Straße', 2), ('é', 4), ('É', 5);
CREATE TABLE m (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE UNIQUE);
INSERT INTO m (email) VALUES ('a@x.org'), ('B@x.org'), ('zoë@x.org');
"""


def test_nocase_keys_that_citext_folds_together_fail_the_plan_not_the_run(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "n.db", NOCASE)
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    failures = json.loads(plan.stdout)["schema_failures"]
    assert [(f["kind"], f["table"], f["name"]) for f in failures] == [
        ("unique-data", "n", "n_pkey")
    ]  # m's emails differ under any folding: not flagged
    assert "COLLATE NOCASE" in failures[0]["error"]
    assert 'type = "text"' in failures[0]["hint"]
    casts = tmp_path / "casts.toml"
    casts.write_text('[n.name]\ntype = "text"\n')
    fixed = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert fixed.exit_code == 0, fixed.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM n").fetchone() == (4,)
        # m kept citext: its unique index is case-insensitive as in SQLite
        assert conn.execute("SELECT id FROM m WHERE email = 'b@X.ORG'").fetchone() == (2,)


def test_a_source_table_named_like_the_journal_is_renamed_not_refused(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(
        tmp_path / "j.db",
        "CREATE TABLE emrops_migration (id INTEGER PRIMARY KEY, state TEXT);"
        "INSERT INTO emrops_migration VALUES (1, 'mine'), (2, 'also mine');",
    )
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stderr
    (rename,) = json.loads(plan.stdout)["renames"]
    assert rename["from"] == "emrops_migration" and rename["to"] != "emrops_migration"
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        rows = conn.execute(f'SELECT id, state FROM "{rename["to"]}" ORDER BY id').fetchall()
    assert rows == [(1, "mine"), (2, "also mine")]
    status = cli("migrate-db", "status", "--to", pg_url)
    assert status.exit_code == 0 and "state: done" in status.stdout


def test_a_utf16_database_is_refused_up_front_with_the_conversion_command(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "u16.db"
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA encoding = 'UTF-16le'")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO t (name) VALUES (?)", [(f"héllo {i} €",) for i in range(50)])
    conn.commit()
    conn.close()
    before = sha256(source)
    url = f"sqlite:///{source}"
    for command in ("plan", "run"):
        result = cli("migrate-db", command, "--from", url, "--to", pg_url)
        # before: run failed on row 1 claiming the text was not valid UTF-8
        assert result.exit_code == 2, (command, result.stderr)
        assert "UTF-16le" in result.stderr and ".dump | sqlite3" in result.stderr
        assert "unexpected" not in result.stderr
    assert sha256(source) == before
    with pg(pg_url) as conn_pg:
        assert conn_pg.execute("SELECT to_regclass('public.t')").fetchone() == (None,)


def test_columns_declared_uuid_migrate_as_uuid(cli, tmp_path: Path, pg_url: str) -> None:
    import uuid

    ids = [uuid.UUID(int=i * 7919 + 1) for i in range(50)]
    source = _db(
        tmp_path / "u.db",
        "CREATE TABLE t (id UUID PRIMARY KEY, g GUID, loose UUID);",
        [
            (
                "INSERT INTO t VALUES (?, ?, ?)",
                [(str(u), str(u).upper(), str(u) if i % 2 else "n/a") for i, u in enumerate(ids)],
            )
        ],
    )
    url = f"sqlite:///{source}"
    # before: 'text values in a numeric column' for every UUID, plan exit 3
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        types = dict(
            conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = 't'"
            ).fetchall()
        )
        assert types == {"id": "uuid", "g": "uuid", "loose": "text"}
        assert conn.execute("SELECT id FROM t ORDER BY id LIMIT 1").fetchone() == (ids[0],)
    assert cli("migrate-db", "verify", "--from", url, "--to", pg_url).exit_code == 0


def test_a_partial_unique_index_is_checked_over_its_own_rows_only(
    cli, tmp_path: Path, pg_url: str
) -> None:
    script = """
    CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE, deleted INTEGER);
    CREATE UNIQUE INDEX u_live_email ON u (email) WHERE deleted = 0;
    INSERT INTO u (email, deleted) VALUES ('zoé@x.org', 1), ('ZOÉ@x.org', 0);
    """
    fine = _db(tmp_path / "fine.db", script)  # the twins: one of them deleted
    plan = cli("migrate-db", "plan", "--from", f"sqlite:///{fine}", "--to", pg_url)
    assert plan.exit_code == 0, plan.stderr
    clash = _db(tmp_path / "clash.db", script + "UPDATE u SET deleted = 0;")
    plan = cli("migrate-db", "plan", "--from", f"sqlite:///{clash}", "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    (failure,) = json.loads(plan.stdout)["schema_failures"]
    assert (failure["kind"], failure["name"]) == ("unique-data", "u_live_email")


def test_the_smallest_64_bit_integer_in_numeric_and_untyped_columns(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # SQLite's abs() of -2^63 is an error ("integer overflow"): the plan's numeric fit and the
    # SQL-built COPY of numbers used it (found by the 400-example property test)
    low, high = -(2**63), 2**63 - 1
    source = _db(
        tmp_path / "ovf.db",
        "CREATE TABLE t (id INTEGER PRIMARY KEY, u, n NUMERIC, r REAL);"
        "CREATE TABLE f (id INTEGER PRIMARY KEY, d NUMERIC(6,2));",
        [
            (
                "INSERT INTO t (u, n, r) VALUES (?, ?, ?)",
                [(1.5, 2.5, 0.5), (low, low, -9.2e18), (high, high, 1e300)],
            ),
            ("INSERT INTO f (d) VALUES (?)", [(1.25,), (low,)]),
        ],
    )
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3 and "unexpected" not in plan.stderr, plan.stderr
    (a,) = json.loads(plan.stdout)["anomalies"]
    assert (a["table"], a["column"], a["condition"], a["count"]) == ("f", "d", "numeric_fit", 1)
    casts = tmp_path / "casts.toml"
    casts.write_text('[f.d]\ntype = "numeric"\n')
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0 and "unexpected" not in run.stderr, run.stderr
    with pg(pg_url) as conn:
        got = conn.execute("SELECT min(n), max(n) FROM t").fetchone()
        assert (int(got[0]), int(got[1])) == (low, high)
        assert int(conn.execute("SELECT min(d) FROM f").fetchone()[0]) == low
