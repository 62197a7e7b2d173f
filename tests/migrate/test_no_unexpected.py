"""No "unexpected" error on data or schema (#16 item 4): each path that printed one is a
reported object or row, with the SQL that failed and a hint."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from emrops.migrate import journal
from emrops.migrate.copy import CopyFailed, copy_table
from emrops.migrate.planner import build_plan, open_source
from tests.migrate.conftest import pg


def _db(path: Path, script: str) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.commit()
    conn.close()
    return path


def test_a_default_postgresql_refuses_at_create_is_a_named_object(
    cli, tmp_path: Path, pg_url: str
) -> None:
    """`DATETIME DEFAULT 0` was 'unexpected DatatypeMismatch'; now the plan flags it, and a
    cast rule that still does not fit is reported by the run with its SQL."""
    source = _db(
        tmp_path / "s.db",
        'CREATE TABLE t ("StartTime" DATETIME DEFAULT 0, n INT);'
        "INSERT INTO t VALUES ('2014-07-30 16:18:51', 1);",
    )
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3
    (a,) = json.loads(plan.stdout)["anomalies"]
    assert a["condition"] == "default" and "does not fit timestamptz" in a["message"]
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject")
    # the default is an anomaly no row holds: reject cannot resolve it, so the run refuses
    # (before session 10 it left the default out silently, exit 0)
    assert run.exit_code == 3 and "unexpected" not in run.stderr
    assert "column default(s) have no PostgreSQL equivalent" in run.stderr
    casts = tmp_path / "casts.toml"
    # StartTime without its default; n with a rule PostgreSQL refuses
    casts.write_text('[t.StartTime]\ndefault = ""\n[t.n]\ndefault = "\'abc\'"\n')
    cli("migrate-db", "rollback", "--to", pg_url, "--yes")
    bad = cli(
        "migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts),
        "--on-error", "reject",
    )  # fmt: skip
    assert bad.exit_code == 3, bad.stderr
    assert "unexpected" not in bad.stderr
    assert "PostgreSQL refused to create table t: invalid input syntax for type bigint" in (
        bad.stderr
    )
    assert "SQL: CREATE TABLE" in bad.stderr and "Try:" in bad.stderr
    with pg(pg_url) as conn:  # nothing was created
        assert conn.execute("SELECT to_regclass('t')").fetchone()[0] is None


IMPOSSIBLE = """
CREATE TABLE d (id INTEGER PRIMARY KEY, at DATETIME, v TEXT);
INSERT INTO d (at, v) VALUES ('2024-01-02 03:04:05', 'ok'), ('2024-02-30 10:00:00', 'bad'),
  ('2024-01-03 03:04:05', 'ok');
CREATE TABLE w (k TEXT PRIMARY KEY, at DATETIME) WITHOUT ROWID;
INSERT INTO w VALUES ('a', '2024-02-30 10:00:00'), ('b', '2024-02-03 10:00:00');
"""


def test_a_value_postgresql_refuses_during_copy_names_the_row_or_is_rejected(
    tmp_path: Path, pg_url: str
) -> None:
    """A value the profile let through but PostgreSQL refuses (forced here by a plan that
    trusts it): abort names the row, the column and the COPY; reject writes the row to the
    reject file and copies the rest."""
    source = _db(tmp_path / "s.db", IMPOSSIBLE)
    conn = open_source(source)
    plan = build_plan(conn)
    conn.close()
    tables = {t.source: t for t in plan.tables}
    for tp in tables.values():  # pretend the profile found every value fine
        for c in tp.columns:
            c.fast = c.converter in ("ts", "text", "pass", "bigint")
    with pg(pg_url) as target:
        for tp in tables.values():
            target.execute(tp.create_sql)
    with journal.connect(pg_url, autocommit=True) as jc:
        journal.ensure(jc)
    for sql_text in (True, False):
        try:
            copy_table(source, pg_url, tables["d"], rejects=None, sql_text=sql_text)
        except CopyFailed as exc:
            assert exc.exit_code == 3
            assert exc.message.startswith(
                'COPY into d failed, row rowid=2: date/time field value out of range: "2024-02-30'
            ), exc.message
            assert 'SQL: COPY "d" ("id", "at", "v") FROM STDIN' in exc.message
            assert exc.hint and "--on-error reject" in exc.hint
        else:
            raise AssertionError("the copy should have failed")
    from emrops.migrate.copy import RejectWriter

    for name, key, sql_text in (("d", 2, True), ("d", 2, False), ("w", {"k": "a"}, False)):
        path = tmp_path / f"rejects-{name}-{sql_text}.jsonl"
        result = copy_table(
            source, pg_url, tables[name], rejects=RejectWriter(path), sql_text=sql_text
        )
        assert (result.rows, result.rejected) == ((2, 1) if name == "d" else (1, 1))
        (entry,) = [json.loads(x) for x in path.read_text().splitlines()]
        assert entry["key"] == key and entry["column"] == "at"
        assert entry["value"] == "'2024-02-30 10:00:00'"
        assert entry["error"].startswith("PostgreSQL: date/time field value out of range")
    with pg(pg_url) as target:
        assert [r[0] for r in target.execute("SELECT v FROM d ORDER BY id")] == ["ok", "ok"]


def test_impossible_dates_and_out_of_range_reals_are_plan_anomalies(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(
        tmp_path / "s.db",
        IMPOSSIBLE + "CREATE TABLE b (a INTEGER); INSERT INTO b VALUES (1), (9.3e18);",
    )
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3
    flagged = {(a["table"], a["column"], a["condition"]) for a in json.loads(plan.stdout)[
        "anomalies"]}  # fmt: skip
    assert flagged == {("d", "at", "iso_bad"), ("w", "at", "iso_bad"), ("b", "a", "fraction")}
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--on-error", "reject",
              "--json")  # fmt: skip
    assert run.exit_code == 3 and "unexpected" not in run.stderr
    assert json.loads(run.stdout)["rejected"] == 3
    verified = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verified.exit_code == 0, verified.stdout + verified.stderr


def test_a_foreign_key_to_a_missing_column_is_a_note_not_a_crash(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = _db(
        tmp_path / "fk.db",
        "CREATE TABLE p (id INTEGER PRIMARY KEY, name TEXT);"
        "CREATE TABLE nokey (x TEXT);"
        "CREATE TABLE c (id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(nope),"
        " q TEXT REFERENCES nokey, r INTEGER REFERENCES p(id));"
        "INSERT INTO p (name) VALUES ('a'); INSERT INTO c (p, q, r) VALUES (1, 'x', 1);",
    )
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stderr
    notes = json.loads(plan.stdout)["notes"]
    assert "c: foreign key (p) to p(nope) names no such key there; skipped" in notes
    assert "c: foreign key (q) to nokey() names no such key there; skipped" in notes
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:  # the valid one is built
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_constraint "
                "WHERE conrelid = 'c'::regclass AND contype = 'f'"
            ).fetchone()[0]
            == 1
        )


def test_verify_skips_exactly_the_rows_the_copy_journaled_as_rejected(
    tmp_path: Path, pg_url: str
) -> None:
    """A row the copy rejected although the profile trusted its values (as when PostgreSQL
    refuses one mid-COPY) is one the source side would count as convertible: verify skips the
    journaled keys and reports them as rejected, instead of naming the table."""
    from emrops.migrate.copy import RejectWriter
    from emrops.migrate.verify import verify

    source = _db(
        tmp_path / "s.db",
        "CREATE TABLE d (id INTEGER PRIMARY KEY, v TEXT);"
        "INSERT INTO d (v) VALUES ('ok'), ('a' || char(0) || 'b'), ('ok');",
    )
    conn = open_source(source)
    plan = build_plan(conn)
    conn.close()
    for tp in plan.tables:  # the profile trusted every value (so verify's source side does)
        for c in tp.columns:
            c.fast = c.converter in ("ts", "text", "pass", "bigint")
    with pg(pg_url) as target:
        for tp in plan.tables:
            target.execute(tp.create_sql)
    with journal.connect(pg_url, autocommit=True) as jc:
        journal.ensure(jc)
    for tp in plan.tables:
        copy_table(source, pg_url, tp, rejects=RejectWriter(tmp_path / "r.jsonl"), sql_text=True)
    with journal.connect(pg_url, autocommit=True) as jc:
        entries = journal.read(jc)
    assert entries["table:d"].detail["rejected_key_ids"] == ["2"]  # key_id: ASCII JSON
    result = verify(plan, pg_url, entries, source=source, jobs=1)
    checks = {c.table: c for c in result.tables}
    assert {t: (c.source_rows, c.target_rows, c.rejected) for t, c in checks.items()} == {
        "d": (2, 2, 1)
    }
    assert all(c.checksum_ok and not c.missing and not c.changed for c in checks.values())
    assert not [p for p in result.problems if "rows in the source" in p or "checksum" in p]
    # a changed rejected row is still skipped, but a changed copied row is found
    with sqlite3.connect(source) as src:
        src.execute("UPDATE d SET v = 'changed' WHERE id = 3")
    src.close()
    again = verify(plan, pg_url, entries, source=source, jobs=1)
    assert [c.checksum_ok for c in again.tables if c.table == "d"] == [False]
