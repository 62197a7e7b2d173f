"""Session 14: databases shaped like real ones not tried before (iOS Core Data, Firefox
places.sqlite, Chrome History, Android Room, Home Assistant, Sequelize, Prisma, Laravel,
Knex, Grafana, Anki). Each test is a defect found there, checked against the source's
values independently of verify; the source's SHA-256 is checked where it matters."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from psycopg import sql

from tests.conftest import _admin_connect, drop_pg_database
from tests.migrate.conftest import migrated_ok, pg, script_db, sha256


def _migrate(cli, url: str, pg_url: str, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    """plan, run and verify with ``extra`` options, each exit 0; the plan as JSON."""
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json", *extra)
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url, *extra)
    assert run.exit_code == 0, run.stdout + run.stderr
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)  # the journaled plan
    assert verify.exit_code == 0, verify.stdout + verify.stderr
    return dict(json.loads(plan.stdout))


# Real timestamps as apps store them in REAL columns (Home Assistant's last_updated_ts, a
# JavaScript Date.now() plus a fraction, Core Data's ZTIMESTAMP, julianday()): the product
# of the double and the unit was rounded in floating point before the rounding to
# microseconds, so about 1 value in 8 arrived 1 us from the nearest microsecond of what
# SQLite held; verify used the same arithmetic and exited 0.
EPOCHS = {
    "s": ("1970-01-01", 1, [1709957222.5798254, 1711282044.0758326, -721540032.3407825]),
    "ms": ("1970-01-01", Decimal("0.001"), [1705410842441.9714, 1705965697291.4446]),
    "2001": ("2001-01-01", 1, [776377461.8976614, 755285957.6292965, 752093841.7613145]),
    "julian": ("1970-01-01", 86400, [2460384.3215464167, 2460312.1690630116]),
}


def test_fractional_epochs_land_on_the_nearest_microsecond(
    cli, tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "epochs.db"
    rows = [(unit, v) for unit, (_, _, values) in EPOCHS.items() for v in values]
    url = script_db(
        db,
        'CREATE TABLE t (id INTEGER PRIMARY KEY, s REAL, ms REAL, "2001" REAL, julian REAL);'
        + "".join(f'INSERT INTO t ("{u}") VALUES ({v!r});' for u, v in rows),
    )
    casts = tmp_path / "casts.toml"
    casts.write_text("".join(f'[t."{u}"]\nepoch = "{u}"\n' for u in EPOCHS))
    before = sha256(db)
    _migrate(cli, url, pg_url, "--cast", str(casts))
    with pg(pg_url) as conn:
        got = conn.execute('SELECT s, ms, "2001", julian FROM t ORDER BY id').fetchall()
    for (unit, value), row in zip(rows, got, strict=True):
        start, scale, _ = EPOCHS[unit]
        days = Decimal(value) - Decimal("2440587.5") if unit == "julian" else Decimal(value)
        micros = int((days * scale * 1_000_000).to_integral_value())  # exact, half to even
        want = datetime.fromisoformat(start).replace(tzinfo=UTC) + timedelta(microseconds=micros)
        assert [v for v in row if v is not None] == [want], (unit, value)
    assert sha256(db) == before


# unicode() in a view (a sort key by first letter, as address-book and flash-card apps
# group entries): sqlglot writes PostgreSQL's ascii(), which is 0 for '' where SQLite
# answers NULL; plan, run and verify exited 0 and the view answered 0.
@pytest.mark.parametrize("numbers", [False, True])
def test_unicode_of_empty_text_in_a_view_is_null(
    cli, tmp_path: Path, pg_url: str, numbers: bool
) -> None:
    db = tmp_path / "unicode.db"
    url = script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT, n INTEGER);"
        "INSERT INTO t VALUES (1, '', 7), (2, 'Émile', NULL), (3, NULL, -1), (4, 'abc', 0);"
        "CREATE VIEW initials AS SELECT id, unicode(s) AS u FROM t;"
        # a number's text (was refused: "function ascii(bigint) does not exist")
        + ("CREATE VIEW digits AS SELECT id, unicode(n) AS u FROM t;" if numbers else ""),
    )
    migrated_ok(cli, url, pg_url)
    src = sqlite3.connect(db)
    views = ["initials", "digits"] if numbers else ["initials"]
    want = {v: src.execute(f"SELECT * FROM {v} ORDER BY id").fetchall() for v in views}
    src.close()
    assert want["initials"][0] == (1, None)
    with pg(pg_url) as conn:
        for view in views:
            assert conn.execute(f"SELECT * FROM {view} ORDER BY id").fetchall() == want[view]


# A DATETIME column becomes timestamptz; SQL that reads it as text (a view's
# `created || ''`, substr(), a trigger copying it into a TEXT column of an audit table)
# printed it to the second: '2024-02-29 23:59:59.5' became '2024-02-29 23:59:59' in the
# view and in every audit row the app wrote on PostgreSQL; plan, run and verify exited 0.
def test_a_timestamp_read_as_text_keeps_its_fraction(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "stamps.db"
    url = script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, created DATETIME);"
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT);"
        "INSERT INTO t VALUES (1, '2024-02-29 23:59:59.5'), (2, '2024-01-01 10:00:00'),"
        " (3, '2024-01-01 10:00:00.000001'), (4, NULL);"
        "CREATE VIEW stamps AS SELECT id, created || '' AS s FROM t;"
        "CREATE TRIGGER t_audit AFTER INSERT ON t BEGIN"
        " INSERT INTO audit (at) VALUES (NEW.created); END;",
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        assert conn.execute("SELECT * FROM stamps ORDER BY id").fetchall() == [
            (1, "2024-02-29 23:59:59.500000"),
            (2, "2024-01-01 10:00:00"),
            (3, "2024-01-01 10:00:00.000001"),
            (4, None),
        ]
        conn.execute("INSERT INTO t (created) VALUES ('2024-03-01 08:00:00.25+00')")
        assert conn.execute("SELECT at FROM audit").fetchall() == [("2024-03-01 08:00:00.250000",)]


# ORDER BY json_extract(...) in a view (Home Assistant's attributes, Grafana's dashboard
# JSON): the translation ordered the values' text ('100' before '3', booleans as 'false'
# and 'true', NULL last), where SQLite orders NULL, then numbers by value, then text: a
# "top N" view answered other rows, with plan, run and verify exit 0.
def test_order_by_json_extract_orders_as_sqlite(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "attrs.db"
    docs = [{"v": 21.5}, {"v": 3}, {"v": 100}, {"v": "7"}, {}, {"v": True}, {"v": None}]
    docs += [{"v": "abc"}, {"v": -2e3}, {"v": False}, {"v": 12345678901234567890}]
    url = script_db(
        db,
        "CREATE TABLE states (id INTEGER PRIMARY KEY, attrs TEXT);"
        + "".join(f"INSERT INTO states (attrs) VALUES ('{json.dumps(d)}');" for d in docs)
        + "CREATE VIEW up AS SELECT id FROM states ORDER BY json_extract(attrs, '$.v'), id;"
        "CREATE VIEW down AS SELECT id FROM states ORDER BY attrs ->> '$.v' DESC, id;"
        "CREATE VIEW top2 AS SELECT id FROM states ORDER BY json_extract(attrs, '$.v') LIMIT 4;",
    )
    migrated_ok(cli, url, pg_url)
    src = sqlite3.connect(db)
    views = ["up", "down", "top2"]
    want = {v: src.execute(f"SELECT id FROM {v}").fetchall() for v in views}
    want["top2"].sort()  # two NULLs tie
    src.close()
    assert sorted(want["top2"]) == [(5,), (7,), (9,), (10,)]  # NULL, NULL, -2000, false
    with pg(pg_url) as conn:
        for view in views:
            got = conn.execute(f"SELECT id FROM {view}").fetchall()
            assert (sorted(got) if view == "top2" else got) == want[view], view


# max()/min() of json_extract() in a view (the day's highest temperature from Home
# Assistant's attributes): the largest text ('3' over 100), plan, run and verify exit 0.
def test_max_of_json_extract_is_sqlites_max(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "attrs.db"
    url = script_db(
        db,
        "CREATE TABLE states (id INTEGER PRIMARY KEY, room TEXT, attrs TEXT);"
        "INSERT INTO states (room, attrs) VALUES ('a', '{\"t\": 21.5}'), ('a', '{\"t\": 3}'),"
        " ('a', '{\"t\": 100}'), ('a', '{}'), ('b', '{\"t\": null}'), ('b', '{\"t\": -4}'),"
        " ('c', '{\"u\": 1}'), ('d', '{\"t\": \"warm\"}'), ('d', '{\"t\": 99}');"
        "CREATE VIEW peaks AS SELECT room, max(json_extract(attrs, '$.t')) AS hi,"
        " min(attrs ->> '$.t') AS lo FROM states GROUP BY room;",
    )
    migrated_ok(cli, url, pg_url)
    with pg(pg_url) as conn:
        got = conn.execute("SELECT room, hi, lo FROM peaks ORDER BY room").fetchall()
    # SQLite: numbers by value, text above numbers, NULLs skipped (its numbers as text here)
    assert got == [("a", "100", "3"), ("b", "-4", "-4"), ("c", None, None), ("d", "warm", "99")]


# Firefox's history trigger: UPDATE ... SET last_visit_date = (SELECT visit_date ...
# ORDER BY ... LIMIT 1). The scalar subquery lost its parentheses in the translation
# (syntax error at or near "SELECT"), so plan and run exited 3 naming it.
def test_a_trigger_setting_a_column_from_a_subquery(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "places.db"
    url = script_db(
        db,
        "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, visits INTEGER DEFAULT 0,"
        " last_visit_date INTEGER);"
        "CREATE TABLE moz_historyvisits (id INTEGER PRIMARY KEY, place_id INTEGER,"
        " visit_date INTEGER, visit_type INTEGER);"
        "CREATE TRIGGER hv_del AFTER DELETE ON moz_historyvisits FOR EACH ROW BEGIN"
        " UPDATE moz_places SET visits = visits - (SELECT OLD.visit_type NOT IN (0, 4)),"
        " last_visit_date = (SELECT visit_date FROM moz_historyvisits"
        " WHERE place_id = OLD.place_id ORDER BY visit_date DESC LIMIT 1)"
        " WHERE id = OLD.place_id; END;"
        "INSERT INTO moz_places VALUES (1, 3, 30), (2, 1, 5);"
        "INSERT INTO moz_historyvisits VALUES (1, 1, 10, 1), (2, 1, 30, 1), (3, 1, 20, 4),"
        " (4, 2, 5, 1);",
    )
    migrated_ok(cli, url, pg_url)
    deletes = ["DELETE FROM moz_historyvisits WHERE id IN (2, 4)"]
    src = sqlite3.connect(tmp_path / "places.db")
    for stmt in deletes:
        src.execute(stmt)
    want = src.execute("SELECT * FROM moz_places ORDER BY id").fetchall()
    src.close()
    assert want == [(1, 2, 20), (2, 0, None)]
    with pg(pg_url) as conn:
        for stmt in deletes:
            conn.execute(stmt)
        assert conn.execute("SELECT * FROM moz_places ORDER BY id").fetchall() == want


# A target created with a language collation (ICU en-US here; en_US.UTF-8 is the default
# of most installs and of Azure's servers): text in a view's ORDER BY, its comparisons and
# max()/min() followed language rules ('a' < 'B', '_x' after 'Z') where SQLite compares
# bytes, so 'the first three below a' named other rows; plan, run and verify exited 0.
def test_text_orders_by_bytes_on_a_language_collation_target(cli, tmp_path: Path) -> None:
    name = f"emrops_test_icu_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as admin:
        admin.execute(
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' "
                "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"
            ).format(sql.Identifier(name))
        )
    try:
        pg_url = f"postgresql+psycopg://postgres@127.0.0.1/{name}"
        db = tmp_path / "names.db"
        url = script_db(
            db,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT);"
            "INSERT INTO t (s) VALUES ('b'), ('B'), ('a'), ('A'), ('_x'), ('é'), ('e'), ('Z'),"
            " ('a b'), ('ab'), (NULL);"
            "CREATE VIEW below_a AS SELECT s FROM t WHERE s < 'a' ORDER BY s LIMIT 3;"
            "CREATE VIEW above_a AS SELECT id, 'a' < s AS up, 'a' < 'B' AS k FROM t"
            " WHERE 'a' >= s;"
            "CREATE VIEW named AS SELECT s AS name FROM t ORDER BY name DESC LIMIT 4;"
            "CREATE VIEW bounds AS SELECT max(s) AS hi, min(s) AS lo FROM t"
            " WHERE s BETWEEN 'B' AND 'b';"
            "CREATE VIEW pairs AS SELECT id, max(s, 'a') AS hi, min(s, 'B') AS lo FROM t;"
            "CREATE VIEW kinds AS SELECT DISTINCT s FROM t ORDER BY s LIMIT 3;"
            "CREATE VIEW both_ AS SELECT s FROM t UNION SELECT 'Zz' ORDER BY s DESC LIMIT 3;"
            "CREATE VIEW shout AS SELECT upper(s) AS s FROM t ORDER BY s LIMIT 4;",
        )
        migrated_ok(cli, url, pg_url)
        src = sqlite3.connect(db)
        views = ["below_a", "above_a", "named", "bounds", "pairs", "kinds", "both_", "shout"]
        want = {v: src.execute(f"SELECT * FROM {v}").fetchall() for v in views}
        want["pairs"].sort()
        want["above_a"].sort()
        src.close()
        assert want["below_a"] == [("A",), ("B",), ("Z",)]
        with pg(pg_url) as conn:
            for view in views:
                got = conn.execute(f"SELECT * FROM {view}").fetchall()
                if view in ("pairs", "above_a"):
                    got.sort()
                    got = [tuple(int(v) if isinstance(v, bool) else v for v in r) for r in got]
                assert got == want[view], view
    finally:
        drop_pg_database(name)


# run --online on a database that is not EMRsim's (Firefox places.sqlite with every table
# keyed): the run installed capture triggers and a change table in the app's database and
# exited 0, then cutover could only refuse ("no such table: emrops_control"), since it
# stops writes through that switch. cutover also refused the bare path run had taken.
def test_online_refuses_a_source_without_the_maintenance_switch(
    cli, tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "places.sqlite"
    url = script_db(
        db,
        "CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT, frecency INTEGER);"
        "CREATE TABLE moz_meta (key TEXT PRIMARY KEY, value NOT NULL) WITHOUT ROWID;"
        "INSERT INTO moz_places VALUES (1, 'https://a', 100);"
        "INSERT INTO moz_meta VALUES ('origin_frecency_count', 1);",
    )
    before = sha256(db)
    run = cli("migrate-db", "run", "--online", "--from", str(db), "--to", pg_url)
    assert run.exit_code == 2, run.stdout + run.stderr
    assert "--online needs the app's maintenance switch (table emrops_control" in run.stderr
    assert "migrate offline" in run.stderr
    assert "unexpected" not in run.stderr
    assert sha256(db) == before  # no trigger, no change table
    with pg(pg_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)
    migrated_ok(cli, url, pg_url)  # offline it migrates


def test_cutover_takes_the_bare_path_run_online_took(cli, tmp_path: Path, pg_url: str) -> None:
    # `--from` may be the file's path (docs: a sqlite:/// URL or the path itself): run
    # --online took it, cutover then refused it as "invalid database URL" (exit 2)
    db = tmp_path / "app.db"
    script_db(
        db,
        "CREATE TABLE emrops_control (key VARCHAR(100) PRIMARY KEY, value JSON NOT NULL,"
        " updated_at DATETIME NOT NULL);"
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);"
        "INSERT INTO t VALUES (1, 'a');",
    )
    run = cli("migrate-db", "run", "--online", "--from", str(db), "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    with sqlite3.connect(db) as lite:
        lite.execute("INSERT INTO t VALUES (2, 'written during the run')")
    lite.close()
    config = tmp_path / "emrops.toml"
    config.write_text(f'db_url = "sqlite:///{db}"\n')
    cut = cli("--config", str(config), "migrate-db", "cutover", "--from", str(db), "--to", pg_url)
    assert cut.exit_code == 0, cut.stdout + cut.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [
            (1, "a"),
            (2, "written during the run"),
        ]


# A JSON column (jsonb on PostgreSQL) read as text in a view: `data LIKE '%"kind":"click"%'`
# (a common shortcut over event payloads), length(), substr(), ||. jsonb keeps no text:
# it prints '{"kind": "click"}' with spaces and sorted keys, so the LIKE view lost its row
# and length() differed, with plan, run and verify exit 0.
def test_a_json_column_read_as_text_fails_the_plan(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "events.db"
    schema = (
        "CREATE TABLE ev (id INTEGER PRIMARY KEY, data JSON);"
        'INSERT INTO ev (data) VALUES (\'{"kind":"click","n":1}\'), (\'[1,2,3]\'), (NULL);'
        "CREATE VIEW same AS SELECT id FROM ev WHERE data = '[1,2,3]';"
    )
    url = script_db(
        db,
        schema + 'CREATE VIEW clicks AS SELECT id FROM ev WHERE data LIKE \'%"kind":"click"%\';'
        "CREATE VIEW sizes AS SELECT id, length(data) AS n FROM ev;",
    )
    code, plan = _plan(cli, url, pg_url)
    assert code == 3
    failures = {f["name"]: f for f in plan["schema_failures"]}
    assert set(failures) == {"clicks", "sizes"}  # equality compares as jsonb: unchanged
    assert "reads a jsonb column as text" in failures["clicks"]["hint"]
    assert 'a cast rule type = "text" for the column keeps its text' in failures["sizes"]["hint"]
    # that rule: the column stays text and the views answer as in SQLite
    casts = tmp_path / "casts.toml"
    casts.write_text('[ev.data]\ntype = "text"\n')
    _migrate(cli, url, pg_url, "--cast", str(casts))
    src = sqlite3.connect(db)
    views = ["same", "clicks", "sizes"]
    want = {v: src.execute(f"SELECT * FROM {v} ORDER BY 1").fetchall() for v in views}
    src.close()
    assert want["clicks"] == [(1,)]
    with pg(pg_url) as conn:
        for view in views:
            assert conn.execute(f"SELECT * FROM {view} ORDER BY 1").fetchall() == want[view]


def _plan(cli, url: str, pg_url: str, *extra: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    res = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json", *extra)
    assert "unexpected" not in res.stderr, res.stderr
    return res.exit_code, json.loads(res.stdout) if res.stdout.strip() else {}


# DEFAULT 1.0 on an INTEGER column (a Sequelize/Knex model with defaultValue 1.0, Core Data's
# Z_OPT default): SQLite's INTEGER affinity stores 1, plan refused it as "numeric default 1.0
# does not fit bigint" (exit 3).
def test_a_whole_real_default_on_an_integer_column(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "defaults.db"
    url = script_db(
        db,
        "CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER DEFAULT 1.0, b INTEGER DEFAULT 2e0,"
        " c INTEGER DEFAULT -3.00);"
        "INSERT INTO t (id) VALUES (1);",
    )
    migrated_ok(cli, url, pg_url)
    src = sqlite3.connect(db)
    src.execute("INSERT INTO t (id) VALUES (2)")
    want = src.execute("SELECT a, b, c, typeof(a) FROM t WHERE id = 2").fetchone()
    src.close()
    assert want == (1, 2, -3, "integer")
    with pg(pg_url) as conn:
        conn.execute("INSERT INTO t (id) VALUES (2)")
        assert conn.execute("SELECT a, b, c FROM t ORDER BY id").fetchall() == [want[:3]] * 2


def test_a_source_another_process_keeps_locked_is_busy_not_damaged(tmp_path: Path) -> None:
    """A browser (Chrome, Firefox) keeps its history database locked while it runs; a sqlite3
    shell with BEGIN EXCLUSIVE does too. plan waited 20 s (the open's probe, then its own read,
    10 s each) and said 'is not an SQLite database (database is locked)', exit 2."""
    import time

    from emrops.errors import Busy, ExitCode
    from emrops.migrate.planner import open_source

    path = tmp_path / "History"
    made = sqlite3.connect(path)
    made.execute("CREATE TABLE urls (id INTEGER PRIMARY KEY, url TEXT)")
    made.execute("INSERT INTO urls (url) VALUES ('https://example.org')")
    made.commit()
    made.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(Busy) as err:
            open_source(path, timeout=0.5)
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert err.value.exit_code == ExitCode.BUSY
    assert "is locked by another process" in err.value.message
    assert "not an SQLite database" not in err.value.message
    assert waited < 3, waited  # one wait, not two
    open_source(path, timeout=0.5).close()  # released: opens
