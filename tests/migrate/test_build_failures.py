"""Objects PostgreSQL refuses to build are named, the rest are built, and the run exits 3."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import pg


def test_a_failing_unique_index_and_check_are_named_and_the_rest_built(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "quirks.db"
    with sqlite3.connect(source) as conn:
        # SQLite keeps 1 and '1' apart in an untyped UNIQUE column; as text they collide.
        # typeof() exists only in SQLite, so that CHECK cannot be created; n >= 0 can.
        conn.execute(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, k UNIQUE, n INTEGER CHECK (n >= 0), "
            "CHECK (length(zeroblob(n)) >= 0))"
        )
        conn.execute("INSERT INTO t (k, n) VALUES (1, 1), ('1', 2), ('x', 3)")
    casts = tmp_path / "casts.toml"
    casts.write_text('[t.k]\ntype = "text"\n')
    result = cli(
        "migrate-db", "run", "--from", f"sqlite:///{source}", "--to", pg_url,
        "--cast", str(casts), "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    out = json.loads(result.stdout)
    failed = out["failed_objects"]
    assert any(f.startswith('unique t_k_key on t: could not create unique index "t_k_key"')
               for f in failed), failed  # fmt: skip
    assert any("t_check2 on t: function zeroblob(bigint) does not exist" in f for f in failed)
    assert out["rows"] == 3 and not out["ok"]
    with pg(pg_url) as conn:
        checks = {
            r[0]: r[1]
            for r in conn.execute(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = 't'::regclass AND contype = 'c'"
            )
        }
        assert checks == {"t_check": "CHECK ((n >= 0))"}
        assert conn.execute("SELECT to_regclass('t_k_key')").fetchone()[0] is None
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 3
        primary = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'p'"
        ).fetchone()[0]
        assert primary == 1
    shown = cli("migrate-db", "status", "--to", pg_url)
    assert shown.exit_code == 3 and "state: built-with-errors" in shown.stdout
    assert "2 object(s) not built" in shown.stderr
    rollback = cli("migrate-db", "rollback", "--to", pg_url, "--yes")
    assert rollback.exit_code == 0, rollback.stderr
    assert cli("migrate-db", "status", "--to", pg_url).exit_code == 0  # nothing there
    with pg(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('t')").fetchone()[0] is None


def test_a_dangling_foreign_key_fails_the_plan_and_is_left_not_valid_by_run(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "orphans.db"
    with sqlite3.connect(source) as conn:  # SQLite enforces foreign keys only when asked to
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, "
            "parent_id INTEGER CONSTRAINT fk_child_parent REFERENCES parent (id))"
        )
        conn.execute("INSERT INTO parent (id) VALUES (1)")
        conn.execute("INSERT INTO child (id, parent_id) VALUES (1, 1), (2, 99)")
        # a composite key to a missing table is skipped (a note), so it orphans nothing
        conn.execute("CREATE TABLE other (a INT, b INT, FOREIGN KEY (a, b) REFERENCES gone (x, y))")
        conn.execute("INSERT INTO other VALUES (1, 2)")
    # plan exit 0 promises a run without failures: the run would exit 3, so plan does
    plan = cli("migrate-db", "plan", "--from", f"sqlite:///{source}", "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    out = json.loads(plan.stdout)
    failures = [(f["kind"], f["table"], f["name"]) for f in out["schema_failures"]]
    assert failures == [("fk-data", "child", "fk_child_parent")], failures
    assert "1 source row(s)" in out["schema_failures"][0]["error"]
    assert "rowid 2" in out["schema_failures"][0]["error"]
    assert any("foreign key to missing table gone skipped" in n for n in out["notes"])
    run = cli("migrate-db", "run", "--from", f"sqlite:///{source}", "--to", pg_url, "--json")
    assert run.exit_code == 3, run.stderr
    out = json.loads(run.stdout)
    assert out["rows"] == 4  # every row is copied, the dangling one too
    assert any(
        f.startswith("foreign key fk_child_parent on child left NOT VALID:")
        and "(parent_id)=(99)" in f
        for f in out["failed_objects"]
    ), out["failed_objects"]
    with pg(pg_url) as conn:
        valid = conn.execute(
            "SELECT convalidated FROM pg_constraint WHERE conname = 'fk_child_parent'"
        ).fetchone()
        assert valid == (False,)
