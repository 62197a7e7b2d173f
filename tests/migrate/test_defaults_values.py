"""Constraints, defaults and values (#16 item 3): JSON checks, SQLite-only defaults, dates."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate.sql import defaults
from tests.migrate.conftest import pg, sha256


def _db(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


DT = "YYYY-MM-DD HH24:MI:SS"
EPOCH = "extract(epoch from now())"
TRANSLATED = [
        ('""', "text", "''"),
        ('"it\'s"', "text", "'it''s'"),
        ("CURRENT_TIMESTAMP", "timestamptz", "CURRENT_TIMESTAMP"),
        ("(DATETIME('now', 'localtime'))", "timestamptz", "CURRENT_TIMESTAMP"),
        ("datetime('now','utc')", "text", f"to_char(now() AT TIME ZONE 'UTC', '{DT}')"),
        ("current_date", "timestamptz", "date_trunc('day', now(), 'UTC')"),
        ("CURRENT_DATE", "date", "(now() AT TIME ZONE 'UTC')::date"),
        ("CURRENT_TIME", "text", "to_char(now() AT TIME ZONE 'UTC', 'HH24:MI:SS')"),
        ("(strftime('%s','now'))", "bigint", "extract(epoch from now())::bigint"),
        ("julianday('now')", "double precision", f"({EPOCH} / 86400.0 + 2440587.5)"),
        ("0", "boolean", "false"),
        ("'t'", "boolean", "true"),
        ("5", "bigint", "5"),
        ("2.5", "numeric(4,1)", "2.5"),
        ("'2024-01-02 03:04:05'", "timestamptz", "'2024-01-02 03:04:05'"),
]  # fmt: skip


def test_defaults_translate_and_compile_on_postgresql(pg_url: str) -> None:
    with pg(pg_url) as conn:
        for i, (expr, pg_type, sql) in enumerate(TRANSLATED):
            d = defaults.translate(expr, pg_type)
            assert d is not None and d.ok and d.sql == sql, expr
            # the expression is a valid default of that type
            conn.execute(f"CREATE TABLE t{i} (x {pg_type} DEFAULT {d.sql}, y int)")
            conn.execute(f"INSERT INTO t{i} (y) VALUES (1)")
            assert conn.execute(f"SELECT x IS NOT NULL FROM t{i}").fetchone()[0], expr


@pytest.mark.parametrize(
    ("expr", "pg_type"),
    [
        ("0", "timestamptz"),
        ("2.5", "bigint"),
        ("2", "boolean"),
        ("CURRENT_TIME", "timestamptz"),
        ("'nope'", "date"),
        ("julianday('now')", "bigint"),
    ],
)
def test_defaults_that_do_not_fit_are_anomalies_with_a_rule(expr: str, pg_type: str) -> None:
    d = defaults.translate(expr, pg_type)
    assert d is not None and not d.ok and d.sql is None
    assert "cast rule" in d.message and "default =" in d.message


REGRESSION = """
CREATE TABLE r (
  id INTEGER PRIMARY KEY,
  f1 text default "",
  a DATETIME default (DATETIME('now', 'localtime')),
  b datetime default current_date,
  "StartTime" DATETIME DEFAULT 0,
  u,
  d DATE
);
INSERT INTO r (f1, a, b, "StartTime", u, d) VALUES
  ('x', '2024-01-01 10:00:00', '2017-08-08', 0, '2020-02-29', '2021-01-01'),
  ('y', '2024-01-01 10:00:00.1234567', '2017-08-09 10:11:12', 2024, '2020-03-01', NULL),
  ('z', '2024-01-01 10:00:00', '2017-08-08', '2014-07-30 16:18:51', NULL, '2021-01-02');
"""


def test_regression_quirks_plan_notes_and_a_cast_rule_for_the_rest(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "regr.db", REGRESSION)
    before = sha256(source)
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3
    out = json.loads(plan.stdout)
    cols = {c["source"]: c for c in out["tables"][0]["columns"]}
    assert cols["f1"]["default"] == "''"
    assert (cols["a"]["pg_type"], cols["a"]["default"]) == ("timestamptz", "CURRENT_TIMESTAMP")
    assert cols["b"]["pg_type"] == "timestamptz"
    assert cols["u"]["pg_type"] == "date" and cols["d"]["pg_type"] == "date"
    flagged = {(a["column"], a["condition"]) for a in out["anomalies"]}
    assert flagged == {("StartTime", "iso_bad"), ("StartTime", "default")}
    (numeric,) = [a for a in out["anomalies"] if a["condition"] == "default"]
    assert "numeric default 0 does not fit timestamptz" in numeric["message"]
    assert "r.b: 2 date-only value(s) become midnight UTC" in out["notes"]
    assert (
        "r.a: 1 timestamp(s) with more than 6 fractional digits are rounded to microseconds"
        in out["notes"]
    )
    assert out["schema_failures"] == []
    casts = tmp_path / "casts.toml"
    casts.write_text('[r.StartTime]\ntype = "text"\ndefault = ""\n')
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts))
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        rows = conn.execute("SELECT f1, b::text, a::text, u::text FROM r ORDER BY id").fetchall()
        assert rows[0][1] == "2017-08-08 00:00:00+00"
        assert rows[1][2] == "2024-01-01 10:00:00.123457+00"  # rounded as PostgreSQL does
        conn.execute("INSERT INTO r (id) VALUES (10)")
        f1, a, b = conn.execute("SELECT f1, a, b FROM r WHERE id = 10").fetchone()
        assert f1 == "" and a is not None and b is not None
        assert (b.hour, b.minute, b.second) == (0, 0, 0)
        conn.execute("DELETE FROM r WHERE id = 10")
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert sha256(source) == before


DJANGO = """
CREATE TABLE "app_doc" ("id" integer NOT NULL PRIMARY KEY AUTOINCREMENT,
  "meta" text NULL CHECK ((JSON_VALID("meta") OR "meta" IS NULL)),
  "tags" text NOT NULL CHECK ((JSON_VALID("tags"))));
INSERT INTO app_doc (meta, tags) VALUES ('{"a": 1, "b": [true, null]}', '[]'),
  (NULL, '["x"]'), ('{"k": 1, "k": 2}', '{}');
"""


def test_json_valid_checks_make_jsonb_and_are_dropped(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(tmp_path / "django.db", DJANGO)
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stderr
    out = json.loads(plan.stdout)
    cols = {c["source"]: c["pg_type"] for c in out["tables"][0]["columns"]}
    assert cols == {"id": "bigint", "meta": "jsonb", "tags": "jsonb"}
    assert not [p for p in out["tables"][0]["post"] if p["kind"] == "check"]
    assert any("implied by jsonb (dropped)" in n and "meta" in n for n in out["notes"])
    assert any("1 JSON value(s) repeat an object key" in n for n in out["notes"])
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT meta->'b'->>0 FROM app_doc WHERE id = 1").fetchone()[0] == (
            "true"
        )
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


def test_json_postgresql_rejects_is_a_plan_failure(cli, tmp_path: Path, pg_url: str) -> None:
    source = _db(
        tmp_path / "s.db",
        "CREATE TABLE d (id INTEGER PRIMARY KEY, meta text CHECK (json_valid(meta)));"
        "INSERT INTO d (meta) VALUES ('{\"a\": \"\\ud800\"}'), ('[1]');",
    )
    plan = cli("migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url, "--json")
    assert plan.exit_code == 3
    (failure,) = json.loads(plan.stdout)["schema_failures"]
    assert failure["kind"] == "jsonb" and failure["name"] == "meta"
    assert failure["error"].startswith("1 value(s) do not parse as jsonb")
    assert 'type = "text"' in failure["hint"]


NOCASE = """
CREATE TABLE u (id INTEGER PRIMARY KEY, email TEXT COLLATE NOCASE UNIQUE,
  nick VARCHAR(20) COLLATE NOCASE, code TEXT COLLATE RTRIM);
INSERT INTO u (email, nick, code) VALUES ('Ann@X.org', 'Ann', 'a '), ('bob@x.org', 'BOB', 'b');
CREATE INDEX u_nick ON u (nick);
"""


def test_collate_nocase_becomes_citext_and_stays_case_insensitive(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(tmp_path / "nocase.db", NOCASE)
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stderr
    out = json.loads(plan.stdout)
    cols = {c["source"]: c["pg_type"] for c in out["tables"][0]["columns"]}
    assert cols == {"id": "bigint", "email": "citext", "nick": "citext", "code": "text"}
    assert out["extensions"] == ["citext"]
    assert any("u.email: COLLATE NOCASE: citext instead of text" in n for n in out["notes"])
    assert any("u.code: COLLATE RTRIM dropped" in n for n in out["notes"])
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id FROM u WHERE email = 'ann@x.ORG'").fetchone() == (1,)
        with pytest.raises(Exception, match="duplicate key"):  # unique stays case-insensitive
            conn.execute("INSERT INTO u (email) VALUES ('BOB@X.ORG')")
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert cli("migrate-db", "rollback", "--to", pg_url, "--yes").exit_code == 0
    with pg(pg_url) as conn:  # the run created citext, so rollback removed it
        assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'citext'"
                            ).fetchone()[0] == 0  # fmt: skip
