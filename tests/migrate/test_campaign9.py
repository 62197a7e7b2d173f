"""Session 9's hostile schemas: relation names PostgreSQL would take for itself, foreign keys
SQLite cannot enforce, names PostgreSQL or psycopg read differently (empty, holding ``%``),
and tables wider than PostgreSQL allows."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import psycopg
import pytest

from emrops.migrate import online, verify
from emrops.migrate.convert import canon_ts
from emrops.migrate.plan import ColumnPlan, TablePlan
from emrops.migrate.profile import CONDITIONS
from tests.migrate.conftest import migrated_ok, pg, script_db


def test_a_table_named_like_another_tables_identity_sequence(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # PostgreSQL names t's identity sequence t_id_seq when it creates t; the table t_id_seq,
    # created after it, then failed with "relation already exists"
    url = script_db(
        tmp_path / "seq.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT);
        CREATE TABLE t_id_seq (id INTEGER PRIMARY KEY, w TEXT);
        INSERT INTO t (v) VALUES ('a'), ('b');
        INSERT INTO t_id_seq VALUES (7, 'x');
        """,
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        # both identities hand out keys past the copied ones
        assert conn.execute("INSERT INTO t (v) VALUES ('c') RETURNING id").fetchone() == (3,)
        assert conn.execute("INSERT INTO t_id_seq (w) VALUES ('y') RETURNING id").fetchone() == (8,)
        seq = conn.execute("SELECT pg_get_serial_sequence('t', 'id')").fetchone()
        assert seq is not None and seq[0] != "public.t_id_seq"


def test_a_foreign_key_to_columns_that_are_not_a_key_is_skipped_with_a_note(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # SQLite fails such a key with "foreign key mismatch" whenever it enforces it, and
    # PostgreSQL refuses to create it: the plan failed, with a hint about cast rules
    url = script_db(
        tmp_path / "fk.db",
        """
        CREATE TABLE parent (id INTEGER PRIMARY KEY, code TEXT, a INT, b INT);
        CREATE UNIQUE INDEX parent_ab ON parent (b, a);
        CREATE TABLE child (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES parent (code),
                            pid INTEGER REFERENCES parent (id), x INT, y INT,
                            FOREIGN KEY (x, y) REFERENCES parent (a, b));
        INSERT INTO parent VALUES (1, 'a', 1, 2), (2, 'b', 3, 4);
        INSERT INTO child VALUES (1, 'a', 1, 1, 2), (2, 'zz', 2, 3, 4);
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    assert any("(pcode) to parent(code) skipped" in n for n in plan["notes"]), plan["notes"]
    with pg(pg_url) as conn:
        keys = conn.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'f' ORDER BY 1"
        ).fetchall()
    assert keys == [("child_pid_fkey",), ("child_x_y_fkey",)]


def test_orphans_are_still_found_beside_a_key_sqlite_cannot_check(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # PRAGMA foreign_key_check fails for the whole table on the mismatched key: the valid key's
    # orphan went unnoticed and the run exited 3 after the plan's exit 0
    url = script_db(
        tmp_path / "orphan.db",
        """
        CREATE TABLE parent (id INTEGER PRIMARY KEY, code TEXT);
        CREATE TABLE child (id INTEGER PRIMARY KEY, pcode TEXT REFERENCES parent (code),
                            pid INTEGER REFERENCES parent (id));
        INSERT INTO parent VALUES (1, 'a');
        INSERT INTO child VALUES (1, 'a', 1), (2, 'a', 9), (3, 'a', NULL);
        """,
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    failures = json.loads(plan.stdout)["schema_failures"]
    assert [(f["kind"], f["name"]) for f in failures] == [("fk-data", "child_pid_fkey")]
    assert "1 source row(s)" in failures[0]["error"] and "rowid 2" in failures[0]["error"]


def test_empty_names_are_renamed(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(
        tmp_path / "empty.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, "" TEXT, " " TEXT, unnamed INT);
        CREATE TABLE "" (x INTEGER);
        INSERT INTO t VALUES (1, 'a', 'b', 5);
        INSERT INTO "" VALUES (3);
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    renames = {(r["kind"], r["from"]) for r in plan["renames"]}
    assert {("table", ""), ("column", "")} <= renames
    with pg(pg_url) as conn:
        cols = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 't' "
            "ORDER BY ordinal_position"
        ).fetchall()
        # the real column "unnamed" keeps its name; "" steps around it
        assert [c[0] for c in cols][2:] == [" ", "unnamed"]
        assert cols[1][0].startswith("unnamed_")
        assert conn.execute('SELECT " ", unnamed FROM t').fetchall() == [("b", 5)]
        assert conn.execute("SELECT x FROM unnamed").fetchall() == [(3,)]


PERCENT_DB = """
CREATE TABLE "t%s" (id INTEGER PRIMARY KEY, "%s" TEXT, "%(x)s" TEXT, "{}" TEXT, ":nul" TEXT,
                    "?" TEXT, "$1" TEXT, "a--b" TEXT, "back\\slash" TEXT, "q'uote" TEXT);
CREATE INDEX "ix%s" ON "t%s" ("%s", "{}");
CREATE VIEW "v%s" AS SELECT "%s", "{}" FROM "t%s" WHERE "?" IS NOT NULL;
INSERT INTO "t%s" VALUES (1, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i');
INSERT INTO "t%s" VALUES (2, '%s', '%(x)s', '{}', ':nul', '?', '$1', '--', '\\N', '''');
"""


def test_names_holding_percent_signs_and_placeholders(cli, tmp_path: Path, pg_url: str) -> None:
    # psycopg reads % in a query with parameters as a placeholder: verification failed with
    # "unexpected ProgrammingError: positional and named placeholders cannot be mixed"
    url = script_db(tmp_path / "pct.db", PERCENT_DB)
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        rows = conn.execute('SELECT "%s", "%(x)s", "back\\slash" FROM "t%s" ORDER BY id')
        assert rows.fetchall() == [("a", "b", "h"), ("%s", "%(x)s", "\\N")]
        assert conn.execute('SELECT count(*) FROM "v%s"').fetchone() == (2,)


def _pct_table(pg_url: str) -> TablePlan:
    with pg(pg_url) as conn:
        conn.execute(
            'CREATE TABLE "t%s" ("i%d" bigint GENERATED BY DEFAULT AS IDENTITY '
            'PRIMARY KEY, "%(x)s" text)'
        )
        conn.execute('INSERT INTO "t%s" ("%(x)s") SELECT g::text FROM generate_series(1, 50) g')
        conn.execute(f"ALTER DATABASE {conn.info.dbname} SET max_parallel_workers_per_gather = 0")
    cols = [
        ColumnPlan("i%d", "i%d", "INTEGER", "bigint", "pass", "", identity=True),
        ColumnPlan("%(x)s", "%(x)s", "TEXT", "text", "text", ""),
    ]
    return TablePlan("t%s", "t%s", 50, False, ["i%d"], cols, "", pk=["i%d"])


def test_split_checksum_and_online_upsert_with_percent_names(monkeypatch, pg_url: str) -> None:
    tp = _pct_table(pg_url)
    with pg(pg_url) as conn:
        whole = verify.target_checksum(conn, tp)
    monkeypatch.setattr(verify, "SPLIT_ROWS", 10)
    assert verify.target_checksum_split(pg_url, tp, 2) == whole
    assert whole[0] == 50
    with pg(pg_url) as conn:
        conn.execute(online._upsert_sql(tp), (3, "changed"))
        conn.execute(online._upsert_sql(tp), (99, "new"))
        assert conn.execute(
            'SELECT "%(x)s" FROM "t%s" WHERE "i%d" IN (3, 99) ORDER BY 1'
        ).fetchall() == [
            ("changed",),
            ("new",),
        ]


def test_a_table_wider_than_postgresql_allows_gets_a_hint(cli, tmp_path: Path, pg_url: str) -> None:
    cols = ", ".join(f"c{i} INT" for i in range(1650))
    url = script_db(tmp_path / "wide.db", f"CREATE TABLE w (id INTEGER PRIMARY KEY, {cols});")
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    failure = json.loads(plan.stdout)["schema_failures"][0]
    assert failure["name"] == "w" and "1600 columns" in failure["error"]
    assert "split the table" in failure["hint"]


def test_time_columns_become_time(cli, tmp_path: Path, pg_url: str) -> None:
    # TIME was taken for a timestamp: every HH:MM:SS value was an anomaly, and no cast rule
    # could name the type
    url = script_db(
        tmp_path / "time.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, tm TIME, tm2 TIME DEFAULT CURRENT_TIME,
                        tm3 time(6) DEFAULT '08:30', opens TEXT);
        INSERT INTO t VALUES (1, '10:00:00', '10:00', '23:59:59.123456', '07:00'),
                             (2, '23:59:59.120', '00:00:00', NULL, '07:30:15.5'),
                             (3, NULL, '12:30:15', '00:00:00.000', NULL);
        CREATE VIEW v AS SELECT id, tm FROM t WHERE tm > '09:00' AND tm2 < '12:00:00';
        CREATE INDEX t_tm ON t (tm);
        """,
    )
    (tmp_path / "casts.toml").write_text('[t.opens]\ntype = "time"\n')
    cast = ["--cast", str(tmp_path / "casts.toml")]
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json", *cast)
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, *cast)
    assert run.exit_code == 0, run.stdout + run.stderr
    verify_ = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify_.exit_code == 0, verify_.stdout + verify_.stderr
    types = {c["target"]: c["pg_type"] for c in json.loads(plan.stdout)["tables"][0]["columns"]}
    assert types == {"id": "bigint", "tm": "time", "tm2": "time", "tm3": "time", "opens": "time"}
    with pg(pg_url) as conn:
        rows = conn.execute("SELECT id, tm, tm2, tm3, opens FROM t ORDER BY id").fetchall()
        assert [tuple(None if v is None else str(v) for v in r[1:]) for r in rows] == [
            ("10:00:00", "10:00:00", "23:59:59.123456", "07:00:00"),
            ("23:59:59.120000", "00:00:00", None, "07:30:15.500000"),
            (None, "12:30:15", "00:00:00", None),
        ]
        assert conn.execute("SELECT id FROM v ORDER BY id").fetchall() == [(1,), (2,)]
        # the defaults: CURRENT_TIME as UTC time, and the literal
        new = conn.execute("INSERT INTO t (id) VALUES (9) RETURNING tm2, tm3").fetchone()
        assert new is not None and new[0] is not None and str(new[1]) == "08:30:00"
    # a changed value is caught: verification compares the time's text
    with pg(pg_url) as conn:
        conn.execute("DELETE FROM t WHERE id = 9")
        conn.execute("UPDATE t SET tm = '23:59:59.121' WHERE id = 2")
    assert cli("migrate-db", "verify", "--from", url, "--to", pg_url).exit_code == 3


def test_times_postgresql_would_read_differently_are_anomalies(
    cli, tmp_path: Path, pg_url: str
) -> None:
    url = script_db(
        tmp_path / "badtime.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, tm TIME);
        INSERT INTO t VALUES (1, '10:00:00'), (2, '24:00:00'), (3, '10:00:00+02:00'),
                             (4, 3600), (5, '10:00:00.1234567'), (6, '10:61');
        """,
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    (anomaly,) = json.loads(plan.stdout)["anomalies"]
    assert anomaly["column"] == "tm" and anomaly["count"] == 5
    assert "HH:MM" in anomaly["message"]


def test_zones_of_hours_alone_are_iso_timestamps(cli, tmp_path: Path, pg_url: str) -> None:
    # '+00' is how PostgreSQL prints a zone (data exported from it); SQLite's julianday()
    # refuses it, so every such value was an anomaly
    url = script_db(
        tmp_path / "tz.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, s TIMESTAMP);
        INSERT INTO t VALUES (1, '2024-01-01 10:00:00+00'), (2, '2024-01-01 10:00:00.5-05'),
                             (3, '2024-01-01T10:00:00+0530'), (4, '2024-06-01 10:00:00+02:00');
        """,
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        rows = conn.execute("SELECT to_char(s, 'HH24:MI:SS.US') FROM t ORDER BY id").fetchall()
    assert [r[0] for r in rows] == [
        "10:00:00.000000",
        "15:00:00.500000",
        "04:30:00.000000",
        "08:00:00.000000",
    ]


def test_declared_sizes_past_postgresqls_limits(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(
        tmp_path / "sizes.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR(20000000), b NUMERIC(1001, 2),
                        c VARCHAR(10485760), d NUMERIC(1000, 2));
        INSERT INTO t VALUES (1, 'x', 1.255, 'y', 2.5);
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    types = {c["target"]: c["pg_type"] for c in plan["tables"][0]["columns"]}
    assert types == {
        "id": "bigint",
        "a": "text",
        "b": "numeric",
        "c": "varchar(10485760)",
        "d": "numeric(1000,2)",
    }
    assert any("NUMERIC(1001, 2)" in n and "unconstrained" in n for n in plan["notes"])
    with pg(pg_url) as conn:
        assert conn.execute("SELECT b::text FROM t").fetchone() == ("1.255",)


def test_constant_default_expressions_are_evaluated(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(
        tmp_path / "consts.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER DEFAULT 0x10, b INTEGER DEFAULT TRUE,
                        c INTEGER DEFAULT (60 * 60 * 24), d TEXT DEFAULT ('a' || 'b'),
                        e REAL DEFAULT (1.0 / 4), f INTEGER DEFAULT (-(2)),
                        g TEXT DEFAULT (CURRENT_DATE || 'x'));
        INSERT INTO t (id) VALUES (1);
        """,
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    out = json.loads(plan.stdout)
    # what changes with time is not frozen into a constant: only g is an anomaly
    assert [(a["column"], a["condition"]) for a in out["anomalies"]] == [("g", "default")]
    cols = {c["target"]: c["default"] for c in out["tables"][0]["columns"]}
    assert (cols["a"], cols["b"], cols["c"], cols["d"], cols["e"], cols["f"]) == (
        "16",
        "1",
        "86400",
        "'ab'",
        "0.25",
        "-2",
    )


def test_hour_24_is_an_anomaly_not_a_failed_copy(cli, tmp_path: Path, pg_url: str) -> None:
    # SQLite's julianday() takes 24:30:00 (the next day), so the plan passed it and the
    # COPY failed on PostgreSQL's "date/time field value out of range"
    url = script_db(
        tmp_path / "h24.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, s DATETIME);
        INSERT INTO t VALUES (1, '2024-01-01 10:00:00'), (2, '2024-01-01 24:30:00');
        """,
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    (anomaly,) = json.loads(plan.stdout)["anomalies"]
    assert (anomaly["column"], anomaly["count"], anomaly["value"]) == (
        "s",
        1,
        "2024-01-01 24:30:00",
    )


def test_timestamps_the_profile_accepts_read_the_same_in_python_and_postgresql(
    pg_url: str,
) -> None:
    """Differential: random mutations of ISO-8601 text; every one the profile's test accepts
    (so the copy sends it to PostgreSQL as it is) must be read by the per-row converter and
    give verification's canonical text, and PostgreSQL must read the same instant. This
    found years before 1000 (strftime does not pad them: 999-12-31), a 5-digit fraction with
    a zone taken for the canonical form, a lower-case zulu or a space before the zone that
    Python refused, and rounding at the end of year 9999 in a zone east of UTC."""
    rng = random.Random(11)
    bases = [
        "2024-01-31 23:59:59.123456",
        "2024-06-15T08:05:09.123Z",
        "0999-12-31 23:59:59.9999995+05:30",
        "9999-12-31 23:59:59.9999995+05:30",
        "2024-02-29 00:00-0800",
    ]
    alphabet = "0123456789-:+ TZz.,\t"
    values = set()
    for _ in range(20_000):
        chars = list(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            i, op = rng.randrange(len(chars)), rng.random()
            if op < 0.5:
                chars[i] = rng.choice(alphabet)
            elif op < 0.75:
                chars.insert(i, rng.choice(alphabet))
            else:
                del chars[i]
        values.add("".join(chars))
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
    test = CONDITIONS["iso"].format(c="v")
    accepted = sorted(r[0] for r in conn.execute(f"SELECT v FROM t WHERE {test}"))
    assert len(accepted) > 300
    ours = [(v, canon_ts(v)) for v in accepted]
    with pg(pg_url) as db:
        theirs = db.execute(
            "SELECT v, to_char(v::timestamptz, 'YYYY-MM-DD HH24:MI:SS.US') "
            "FROM unnest(%s::text[]) AS v",
            ([v for v, _c in ours],),
        ).fetchall()
    assert [t[1] for t in theirs] == [c for _v, c in ours]


def test_keys_at_the_ends_of_the_64_bit_range(cli, tmp_path: Path, pg_url: str) -> None:
    # setval(max + 1) overflowed: run exit 3 ("bigint out of range") after plan exit 0
    url = script_db(
        tmp_path / "ends.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
        INSERT INTO t VALUES (9223372036854775807, 'a'), (-9223372036854775808, 'b');
        CREATE TABLE n (id INTEGER PRIMARY KEY, v TEXT);
        INSERT INTO n VALUES (-5, 'a');
        CREATE TABLE e (id INTEGER PRIMARY KEY, v TEXT);
        """,
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (2,)
        # negative keys only, or none: the identity starts at 1
        assert conn.execute("INSERT INTO n (v) VALUES ('b') RETURNING id").fetchone() == (1,)
        assert conn.execute("INSERT INTO e (v) VALUES ('b') RETURNING id").fetchone() == (1,)
        # the largest key taken: the identity is exhausted, as SQLite's rowid was
        with pytest.raises(psycopg.errors.SequenceGeneratorLimitExceeded):
            conn.execute("INSERT INTO t (v) VALUES ('c')")


def test_names_of_catalog_relations_are_renamed(cli, tmp_path: Path, pg_url: str) -> None:
    # pg_catalog is searched first: a table created as pg_class was shadowed by the catalog in
    # every statement (plan: "permission denied: pg_class is a system catalog", exit 3)
    url = script_db(
        tmp_path / "catalog.db",
        """
        CREATE TABLE pg_class (id INTEGER PRIMARY KEY, v TEXT);
        CREATE TABLE pg_notes (id INTEGER PRIMARY KEY, v TEXT);
        CREATE INDEX pg_type_oid_index ON pg_notes (v);
        CREATE VIEW pg_views AS SELECT v FROM pg_class;
        INSERT INTO pg_class VALUES (1, 'a'), (2, 'b');
        INSERT INTO pg_notes VALUES (1, 'n');
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    renamed = {r["from"]: r["to"] for r in plan["renames"]}
    assert set(renamed) == {"pg_class", "pg_views", "pg_type_oid_index"}  # not pg_notes
    with pg(pg_url) as conn:
        table, view = renamed["pg_class"], renamed["pg_views"]
        assert conn.execute(f'SELECT v FROM "{table}" ORDER BY id').fetchall() == [("a",), ("b",)]
        assert conn.execute(f'SELECT count(*) FROM "{view}"').fetchone() == (2,)
        assert conn.execute("SELECT v FROM pg_notes").fetchall() == [("n",)]


def test_any_in_a_strict_table_is_an_untyped_column(cli, tmp_path: Path, pg_url: str) -> None:
    # ANY has NUMERIC affinity in an ordinary table, none in a STRICT one: its text values
    # were reported as "text values in a numeric column"
    url = script_db(
        tmp_path / "strict.db",
        """
        CREATE TABLE s (id INTEGER PRIMARY KEY, a ANY, b ANY, c ANY) STRICT;
        CREATE TABLE loose (id INTEGER PRIMARY KEY, a ANY);
        INSERT INTO s VALUES (1, 'x', 1, '007'), (2, 'y', 2, '1.50');
        INSERT INTO loose VALUES (1, '007');
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    types = {(t["source"], c["target"]): c["pg_type"] for t in plan["tables"] for c in t["columns"]}
    assert (types[("s", "a")], types[("s", "b")], types[("s", "c")]) == ("text", "bigint", "text")
    with pg(pg_url) as conn:
        assert conn.execute("SELECT c FROM s ORDER BY id").fetchall() == [("007",), ("1.50",)]
        # the ordinary table's ANY stored '007' as the number 7 (NUMERIC affinity)
        assert conn.execute("SELECT a::text FROM loose").fetchone() == ("7",)


def test_online_run_cutover_and_rollback_with_hostile_names(
    cli, tmp_path: Path, pg_url: str
) -> None:
    # the online replay's DELETE and the rollback's replay into SQLite put names holding % into
    # queries with parameters: rollback failed with "unexpected ProgrammingError"
    db = tmp_path / "app.db"
    script_db(
        db,
        """
        CREATE TABLE emrops_control (key VARCHAR(100) PRIMARY KEY, value JSON NOT NULL,
                                     updated_at DATETIME NOT NULL);
        CREATE TABLE "t%s" (id INTEGER PRIMARY KEY, "%(x)s" TEXT, tm TIME);
        INSERT INTO "t%s" VALUES (1, 'a', '10:00:00'), (2, 'b', '11:30'), (3, 'c', '12:00');
        """,
    )
    config = tmp_path / "emrops.toml"
    config.write_text(f'db_url = "sqlite:///{db}"\n')
    env = {"EMROPS_CONFIG": str(config)}
    src = ["--from", f"sqlite:///{db}", "--to", pg_url]
    run = cli("migrate-db", "run", "--online", *src, env=env)
    assert run.exit_code == 0, run.stdout + run.stderr
    with sqlite3.connect(db) as conn:  # the app writes while the run is online
        conn.execute("""UPDATE "t%s" SET "%(x)s" = 'A', tm = '09:15:30.5' WHERE id = 1""")
        conn.execute('DELETE FROM "t%s" WHERE id = 2')
    cut = cli("migrate-db", "cutover", *src, env=env)
    assert cut.exit_code == 0, cut.stdout + cut.stderr
    with pg(pg_url) as conn:
        rows = conn.execute('SELECT id, "%(x)s", tm::text FROM "t%s" ORDER BY id').fetchall()
        assert rows == [(1, "A", "09:15:30.5"), (3, "c", "12:00:00")]
        # the app writes on PostgreSQL, then the migration is rolled back
        conn.execute("""INSERT INTO "t%s" VALUES (4, 'd', '13:00')""")
        conn.execute('DELETE FROM "t%s" WHERE id = 3')
    back = cli("migrate-db", "rollback", "--yes", *src, env=env)
    assert back.exit_code == 0, back.stdout + back.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute('SELECT id, "%(x)s", tm FROM "t%s" ORDER BY id').fetchall()
    assert rows == [(1, "A", "09:15:30.5"), (4, "d", "13:00:00")]


def test_a_without_rowid_key_holding_nul_or_bad_utf8(cli, tmp_path: Path, pg_url: str) -> None:
    # plan: the anomaly's example key was read as text ("unexpected OperationalError: Could not
    # decode to UTF-8"); run --on-error reject: the rejected keys went into the journal's jsonb
    # (PostgreSQL refuses \u0000) and the COPY failed; verify re-read the table as text
    db = tmp_path / "keys.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
        conn.execute("INSERT INTO kv VALUES ('a', '1'), ('b' || char(0) || 'c', '2'), ('é', '3')")
        conn.execute("INSERT INTO kv VALUES (CAST(x'ff61' AS TEXT), '4'), ('z', '5')")
    url = f"sqlite:///{db}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stdout + plan.stderr
    kinds = sorted(a["condition"] for a in json.loads(plan.stdout)["anomalies"])
    assert kinds == ["bad_utf8", "nul"], kinds
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject")
    assert run.exit_code == 3 and "2 row(s) rejected" in run.stderr, run.stdout + run.stderr
    assert "unexpected" not in run.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT k FROM kv ORDER BY v").fetchall() == [("a",), ("é",), ("z",)]
    verify_ = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify_.exit_code == 0, verify_.stdout + verify_.stderr


def test_a_journal_written_with_the_keys_themselves_still_verifies() -> None:
    # journals before session 9 held "rejected_keys"; a --resume or verify reads them as ids
    from emrops.migrate.rowconv import key_id, rejected_ids

    assert rejected_ids({"rejected_keys": [2, {"k": "a"}]}) == [key_id(2), key_id({"k": "a"})]
    assert rejected_ids({"rejected_key_ids": ['{"k": "b\\u0000c"}']}) == ['{"k": "b\\u0000c"}']
    assert key_id({"k": "b\x00c"}).isascii()
