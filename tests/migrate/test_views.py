# ruff: noqa: E501  (the quirks are written as SQLite users write them)
"""SQLite view SQL that PostgreSQL rejects or answers differently, translated: same names,
same rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from emrops.migrate.planner import build_plan, open_source
from tests.migrate.conftest import pg
from tests.migrate.corpus.compare import rows

QUIRKS = """
CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT, code TEXT, qty INTEGER, price REAL,
    amount TEXT, flag BOOLEAN, meta JSON, born DATE, seen DATETIME);
CREATE TABLE allowed (id INTEGER);
INSERT INTO item VALUES
    (1, 'Apple', 'A1', 7, 2.5, '10', 1, '{"a": {"b": 1}, "tags": ["x"]}', '2024-01-31', '2024-02-29 10:00:00'),
    (2, 'banana', 'b2', 2, 0.75, '3.5', 0, '{"a": {"b": 2}}', '2023-12-01', '2024-03-01 23:59:59'),
    (3, 'Cherry', 'C3', -3, -1.25, 'x7', 1, '{"a": null}', NULL, NULL),
    (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
INSERT INTO allowed VALUES (1), (3);
CREATE VIEW v_names AS SELECT id, qty * 2, qty * 2 AS Twice, name || '!', upper(name), id, qty * 2 FROM item;
CREATE VIEW v_nocase AS SELECT id FROM item WHERE name = 'APPLE' COLLATE NOCASE OR code COLLATE NOCASE = 'B2' ORDER BY name COLLATE NOCASE;
CREATE VIEW v_in AS SELECT id FROM item WHERE id IN allowed OR id IN ();
CREATE VIEW v_not_in AS SELECT id FROM item WHERE id NOT IN ();
CREATE VIEW v_types AS SELECT id, typeof(qty) AS tq, typeof(name) AS tn, typeof(price) AS tp FROM item;
CREATE VIEW v_match AS SELECT id FROM item WHERE name LIKE 'a%' OR name GLOB 'C*' OR code LIKE '_2';
CREATE VIEW v_math AS SELECT id, qty / 2 AS idiv, price / 2 AS rdiv, CAST(price AS INTEGER) AS trunc_p,
    CAST(amount AS INTEGER) AS amount_i, amount + 1 AS amount_plus, qty || '' AS qty_text,
    qty + 0.5 AS half, 7 % 3 AS m FROM item;
CREATE VIEW v_agg AS SELECT sum(amount) AS s, avg(amount) AS a, total(amount) AS t,
    group_concat(qty) AS g, group_concat(name, '|') AS g2, count(*) AS n, sum(flag) AS flags FROM item;
CREATE VIEW v_funcs AS SELECT id, ifnull(name, '?') AS n, substr(name, 2, 3) AS s, instr(name, 'an') AS i,
    iif(qty > 0, 'pos', 'neg') AS sign, printf('%05d|%.2f|%s', qty, price, name) AS p,
    CAST(json_extract(meta, '$.a.b') AS TEXT) AS jb, CAST(meta ->> '$.a.b' AS TEXT) AS jb2, length(name) AS len FROM item;
CREATE VIEW v_dates AS SELECT id, date(seen) AS d, datetime(seen, '+1 day') AS tomorrow,
    date(born, 'start of month', '+1 month', '-1 day') AS month_end, strftime('%Y/%m', born) AS ym,
    strftime('%s', seen) AS epoch, julianday(seen) - julianday(born) AS days FROM item;
CREATE VIEW v_truth AS SELECT id, CASE WHEN qty THEN 'some' ELSE 'none' END AS has FROM item WHERE qty AND NOT amount IS NULL OR code;
CREATE VIEW v_bare AS SELECT a.id AS allowed_id, i.name, count(*) AS n FROM allowed a JOIN item i ON i.id = a.id GROUP BY a.id;
CREATE VIEW v_bare_pk AS SELECT i.id, i.name, i.qty, count(a.id) AS n FROM item i LEFT JOIN allowed a ON a.id = i.id GROUP BY i.id ORDER BY i.name;
CREATE VIEW v_limit AS SELECT id FROM item ORDER BY id LIMIT -1 OFFSET 1;
CREATE VIEW v_flags AS SELECT id FROM item WHERE flag = 1 AND qty > '1';
"""


def test_view_quirks_keep_sqlite_names_and_rows(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "quirks.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(QUIRKS)
    lite.close()
    result = cli("migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url, "--json")
    assert result.exit_code == 0, (result.stderr, json.loads(result.stdout)["failed_objects"])
    lite = sqlite3.connect(db)
    plan = build_plan(open_source(db))
    with pg(pg_url) as conn:
        conn.execute("SET TimeZone = 'America/New_York'")  # the app's session zone is its own
        for v in plan.views:
            src = lite.execute(f'SELECT * FROM "{v.source}"')
            cur = conn.execute(f'SELECT * FROM "{v.target}"')
            assert [d.name for d in cur.description or []] == [d[0] for d in src.description]
            assert rows(src.fetchall()) == rows(cur.fetchall()), (v.source, v.sql)
    names = next(v for v in plan.views if v.source == "v_names").columns
    assert names == ["id", "qty * 2", "Twice", "name || '!'", "upper(name)", "id:1", "qty * 2:1"]


def test_cast_file_replaces_a_view_and_a_failing_view_shows_its_sql(
    cli, tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "bad.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
            "INSERT INTO t (v) VALUES ('a');"
            "CREATE VIEW odd AS SELECT id, zeroblob(2) AS z FROM t;"
            "CREATE VIEW fine AS SELECT id FROM t;"
        )
    lite.close()
    result = cli("migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url, "--json")
    assert result.exit_code == 3
    failed = json.loads(result.stdout)["failed_objects"]
    assert failed == [
        "view odd (SQLite SQL not translatable): function zeroblob(integer) does not exist; "
        'SQL sent: SELECT "t"."id" AS "id", ZEROBLOB(2) AS "z" FROM "t" AS "t"'
    ]
    assert cli("migrate-db", "rollback", "--to", pg_url, "--yes").exit_code == 0
    casts = tmp_path / "casts.toml"
    casts.write_text("[view.odd]\nsql = \"SELECT id, '\\\\x0000'::bytea AS z FROM t\"\n")
    again = cli(
        "migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url, "--cast", str(casts)
    )
    assert again.exit_code == 0, again.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id, z FROM odd").fetchall() == [(1, b"\x00\x00")]
    bad = tmp_path / "bad.toml"
    bad.write_text('[view.nope]\nsql = "SELECT 1"\n')
    wrong = cli(
        "migrate-db", "plan", "--from", f"sqlite:///{db}", "--to", pg_url, "--cast", str(bad)
    )
    assert wrong.exit_code == 2 and "cast file names unknown view 'nope'" in wrong.stderr
