"""Columns named like PostgreSQL's system columns (xmin, ctid, ...) are renamed, as PostgreSQL
refuses them quoted or not; views are translated after the views they select from, whatever
order SQLite created them in."""

from __future__ import annotations

from pathlib import Path

from tests.migrate.conftest import migrated_ok, pg, script_db


def test_system_column_names_are_renamed(cli, tmp_path: Path, pg_url: str) -> None:
    url = script_db(
        tmp_path / "sys.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, xmin INT, ctid TEXT, "TableOid" TEXT,
                        cmax REAL, xmin_ INT, oid INT);
        CREATE INDEX t_x ON t (xmin, ctid);
        CREATE VIEW v AS SELECT xmin, ctid, xmin_ FROM t WHERE cmax > 1;
        INSERT INTO t VALUES (1, 2, 'a', 'b', 1.5, 3, 7), (2, 4, 'c', 'd', 0.5, 5, 8);
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    renamed = {(r["from"], r["to"]) for r in plan["renames"] if r["kind"] == "column"}
    # xmin_ is taken by a column of its own: xmin goes one further
    assert renamed == {("xmin", "xmin__"), ("ctid", "ctid_"), ("cmax", "cmax_")}
    with pg(pg_url) as conn:
        rows = conn.execute('SELECT xmin__, ctid_, "TableOid", xmin_, oid FROM t ORDER BY id')
        assert rows.fetchall() == [(2, "a", "b", 3, 7), (4, "c", "d", 5, 8)]
        # the view keeps its own column names, over the renamed columns
        assert conn.execute("SELECT xmin, ctid, xmin_ FROM v").fetchall() == [(2, "a", 3)]


def test_a_view_over_a_view_created_after_it_is_translated(
    cli, tmp_path: Path, pg_url: str
) -> None:
    url = script_db(
        tmp_path / "views.db",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, n INT, label TEXT);
        CREATE VIEW a AS SELECT id, ifnull(label, 'none') || ':' || n AS tag FROM b WHERE n > 1;
        CREATE VIEW b AS SELECT id, n, label FROM t;
        INSERT INTO t VALUES (1, 1, 'x'), (2, 2, NULL), (3, 3, 'y');
        """,
    )
    plan = migrated_ok(cli, url, pg_url)
    assert not [n for n in plan["notes"] if "not translated" in n], plan["notes"]
    with pg(pg_url) as conn:
        assert conn.execute("SELECT tag FROM a ORDER BY id").fetchall() == [("none:2",), ("y:3",)]
