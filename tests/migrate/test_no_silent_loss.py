"""No row is lost without a word: NULL keys SQLite allows, counts measured on the target,
NULL everywhere in verify, hostile identifiers (issue #16 item 0 a-c)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate import journal
from emrops.migrate.copy import RowsLost, copy_table
from emrops.migrate.planner import build_plan, open_source
from tests.migrate.conftest import pg, sha256


def _db(path: Path, script: str) -> Path:
    with sqlite3.connect(path) as conn:
        conn.executescript(script)
    conn.close()
    return path


DESC = """
CREATE TABLE t (id INTEGER PRIMARY KEY DESC, v TEXT);
INSERT INTO t VALUES (NULL, 'a'), (NULL, 'b'), (5, 'e');
"""


def test_integer_primary_key_desc_null_keys_are_an_anomaly_in_plan(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "desc.db", DESC)
    result = cli("migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url, "--json")
    assert result.exit_code == 3, result.stderr
    plan = json.loads(result.stdout)
    (a,) = plan["anomalies"]
    assert (a["table"], a["column"], a["condition"], a["count"]) == ("t", "id", "null", 2)
    assert 'null_key = "generate"' in a["message"] and "--on-error reject" in a["message"]
    (col,) = [c for c in plan["tables"][0]["columns"] if c["source"] == "id"]
    assert not col["identity"]  # not a rowid alias: no identity from the rowid


def test_integer_primary_key_desc_run_refuses_then_rejects_the_null_keys(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "desc.db", DESC)
    before = sha256(source)
    url = f"sqlite:///{source}"
    refused = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert refused.exit_code == 3 and "table t" in refused.stderr and "NULL" in refused.stderr
    rejects = tmp_path / "rejects.jsonl"
    run = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject",
        "--reject-file", str(rejects), "--json",
    )  # fmt: skip
    assert run.exit_code == 3, run.stderr
    out = json.loads(run.stdout)
    assert (out["rows"], out["rejected"]) == (1, 2)
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    assert [x["value"] for x in lines] == ["None", "None"] and {x["column"] for x in lines} == {
        "id"
    }
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id, v FROM t").fetchall() == [(5, "e")]
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stderr  # target + rejected = source
    assert "unexpected" not in verified.stderr + run.stderr
    assert sha256(source) == before


def test_integer_primary_key_desc_generated_keys_keep_every_row(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "desc.db", DESC)
    casts = tmp_path / "casts.toml"
    casts.write_text('[t.id]\nnull_key = "generate"\n')
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert plan.exit_code == 0, plan.stderr
    assert "2 NULL key(s) get generated keys from 6 on" in plan.stdout
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        rows = conn.execute("SELECT id, v FROM t ORDER BY v").fetchall()
        assert rows == [(6, "a"), (7, "b"), (5, "e")]
        conn.execute("INSERT INTO t (v) VALUES ('new')")  # the identity is past the keys
        assert conn.execute("SELECT id FROM t WHERE v = 'new'").fetchone()[0] == 8
        conn.execute("DELETE FROM t WHERE v = 'new'")
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


def test_generate_is_refused_on_a_composite_key(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(
        tmp_path / "c.db",
        "CREATE TABLE c (a INT, b TEXT, v, PRIMARY KEY (a, b)); INSERT INTO c VALUES (1, NULL, 1);",
    )
    casts = tmp_path / "casts.toml"
    casts.write_text('[c.b]\nnull_key = "generate"\n')
    result = cli(
        "migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url, "--cast", str(casts)
    )
    assert result.exit_code == 2
    assert "single-column integer primary key" in result.stderr


OTHER_KEYS = """
CREATE TABLE i (id INT PRIMARY KEY, v TEXT);
INSERT INTO i VALUES (NULL, 'a'), (NULL, 'b'), (5, 'e');
CREATE TABLE c (a INT, b TEXT, v, PRIMARY KEY (a, b));
INSERT INTO c VALUES (1, NULL, 1), (1, NULL, 2), (1, 'x', 3);
CREATE TABLE w (a INT, b TEXT, PRIMARY KEY (a, b)) WITHOUT ROWID;
INSERT INTO w VALUES (1, '1'), (2, '2');
CREATE TABLE r (id INTEGER, v TEXT, PRIMARY KEY (id DESC));
INSERT INTO r (v) VALUES ('rowid alias: never NULL');
"""


def test_null_keys_of_every_non_alias_shape_are_rejected_never_lost(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "keys.db", OTHER_KEYS)
    url = f"sqlite:///{source}"
    plan = json.loads(cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json").stdout)
    flagged = {(a["table"], a["column"], a["count"]) for a in plan["anomalies"]}
    assert flagged == {("i", "id", 2), ("c", "b", 2)}
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject", "--json")
    assert run.exit_code == 3, run.stderr
    tables = {t["table"]: t for t in json.loads(run.stdout)["tables"]}
    assert {k: (t["rows"], t["rejected"]) for k, t in tables.items()} == {
        "i": (1, 2), "c": (1, 2), "w": (2, 0), "r": (1, 0),
    }  # fmt: skip
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id, v FROM r").fetchall() == [(1, "rowid alias: never NULL")]
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


def test_rows_dropped_by_the_target_are_an_error_naming_the_table(
    tmp_path: Path, pg_url: str
) -> None:
    """The copy trusts PostgreSQL's count of what arrived, not its own count of what it sent:
    a BEFORE trigger returning NULL makes COPY skip rows without an error."""
    source = _db(
        tmp_path / "s.db",
        "CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT);"
        "INSERT INTO s (v) VALUES ('keep'), ('drop'), ('keep');",
    )
    conn = open_source(source)
    (tp,) = build_plan(conn).tables
    conn.close()
    with pg(pg_url) as target:
        target.execute(tp.create_sql)
        target.execute(
            "CREATE FUNCTION eat() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "IF NEW.v = 'drop' THEN RETURN NULL; END IF; RETURN NEW; END $$"
        )
        target.execute("CREATE TRIGGER eat BEFORE INSERT ON s FOR EACH ROW EXECUTE FUNCTION eat()")
    with journal.connect(pg_url, autocommit=True) as jc:
        journal.ensure(jc)
    for sql_text in (True, False):
        with pytest.raises(RowsLost) as caught:
            copy_table(source, pg_url, tp, rejects=None, sql_text=sql_text)
        assert "table s: 3 row(s) read from the source but PostgreSQL loaded 2" in str(
            caught.value.message
        )
        assert caught.value.exit_code == 3
        with pg(pg_url) as target:  # rolled back, not journaled as copied
            assert target.execute("SELECT count(*) FROM s").fetchone()[0] == 0
            assert (
                target.execute(
                    "SELECT count(*) FROM emrops_migration WHERE item = 'table:s'"
                ).fetchone()[0]
                == 0
            )


NULLS = """
CREATE TABLE n (
  id INTEGER PRIMARY KEY, t TEXT, i INTEGER, r REAL, d NUMERIC(6,2), b BOOLEAN, ts DATETIME,
  dt DATE, j JSON, u CHAR(32), x BLOB, anything
);
INSERT INTO n VALUES (1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO n VALUES (2, 'a', 1, 1.5, 2.25, 1, '2024-01-02 03:04:05', '2024-01-02', '{"a": 1}',
  '0123456789abcdef0123456789abcdef', x'00ff', 7);
CREATE TABLE w (k TEXT PRIMARY KEY, t TEXT, r REAL) WITHOUT ROWID;
INSERT INTO w VALUES ('k', NULL, NULL);
CREATE TABLE nokey (t TEXT, r REAL);
INSERT INTO nokey VALUES (NULL, NULL), (NULL, NULL), ('x', NULL);
"""


def test_verify_handles_null_in_every_position(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(tmp_path / "nulls.db", NULLS)
    url = f"sqlite:///{source}"
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stderr
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    with pg(pg_url) as conn:  # a difference is found and named, NULLs and all
        conn.execute("UPDATE n SET t = 'changed' WHERE id = 1")
        conn.execute("DELETE FROM nokey WHERE t IS NULL AND ctid = (SELECT min(ctid) FROM nokey)")
    differs = cli("migrate-db", "verify", "--from", url, "--to", pg_url, "--json")
    assert differs.exit_code == 3
    problems = json.loads(differs.stdout)["problems"]
    assert "changed: n (id=1): column t differs" in problems
    assert "nokey: 3 rows in the source, 2 in the target" in problems
    assert "unexpected" not in differs.stderr


HOSTILE = """
CREATE TABLE "pa""rent 't" ("i""d" INTEGER PRIMARY KEY, "na'me" TEXT NOT NULL UNIQUE,
  "select" INT CHECK ("select" >= 0), "Ünï cødé" TEXT DEFAULT 'x''y');
CREATE TABLE "ch'ild" ("id" INTEGER PRIMARY KEY,
  "p""id" INTEGER REFERENCES "pa""rent 't"("i""d"), "order" REAL, "from" TEXT);
CREATE INDEX "ix ""q'" ON "ch'ild" ("order", "from") WHERE "order" > 0;
CREATE UNIQUE INDEX "ü nique" ON "ch'ild" ("from");
CREATE VIEW "v ""w'" AS SELECT p."na'me" AS "Näme", c."order" AS "OrderX"
  FROM "pa""rent 't" p JOIN "ch'ild" c ON c."p""id" = p."i""d";
INSERT INTO "pa""rent 't" VALUES (1, 'a"b', 1, 'ü'), (2, 'c''d', NULL, NULL);
INSERT INTO "ch'ild" VALUES (1, 1, 1.5, 'X'), (2, 2, NULL, NULL), (3, NULL, -1, 'y');
"""


def test_hostile_identifiers_are_quoted_everywhere(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(tmp_path / "hostile.db", HOSTILE)
    before = sha256(source)
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url)
    assert plan.exit_code == 0, plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--json")
    assert run.exit_code == 0, run.stderr
    assert json.loads(run.stdout)["rows"] == 5
    with pg(pg_url) as conn:
        assert conn.execute('SELECT "Näme", "OrderX" FROM "v ""w\'" ORDER BY 1').fetchall() == [
            ('a"b', 1.5),
            ("c'd", None),
        ]
        assert conn.execute("SELECT \"Ünï cødé\" FROM \"pa\"\"rent 't\" WHERE \"i\"\"d\" = 2"
                            ).fetchone() == (None,)  # fmt: skip
        conn.execute('INSERT INTO "pa""rent \'t" ("na\'me") VALUES (\'new\')')
        assert conn.execute(
            'SELECT "i""d", "Ünï cødé" FROM "pa""rent \'t" WHERE "na\'me" = \'new\''
        ).fetchone() == (3, "x'y")
        conn.execute('DELETE FROM "pa""rent \'t" WHERE "na\'me" = \'new\'')
    for command in ("verify", "status"):
        args = ["--from", url] if command == "verify" else []
        done = cli("migrate-db", command, *args, "--to", pg_url)
        assert done.exit_code == 0, done.stdout + done.stderr
    assert cli("migrate-db", "rollback", "--to", pg_url, "--yes").exit_code == 0
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = "
                            "'public'::regnamespace").fetchone()[0] == 0  # fmt: skip
    assert sha256(source) == before
