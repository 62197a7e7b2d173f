"""Translated triggers behave as in SQLite: the same statements on both sides, the same rows."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from tests.migrate.conftest import pg
from tests.migrate.corpus.compare import rows

SCHEMA = """
CREATE TABLE product (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price NUMERIC(8,2) NOT NULL,
    stock INTEGER NOT NULL DEFAULT 0, updated TEXT, touched DATETIME);
CREATE TABLE price_history (id INTEGER PRIMARY KEY, product_id INTEGER, old_price NUMERIC(8,2),
    new_price NUMERIC(8,2), note TEXT);
CREATE TABLE stats (name TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0);
CREATE TABLE review (id INTEGER PRIMARY KEY, product_id INTEGER, stars INTEGER);
CREATE TABLE quarantine (id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO stats VALUES ('products', 0), ('reviews', 0);
CREATE TRIGGER product_touch AFTER UPDATE ON product BEGIN
    UPDATE product SET touched = CURRENT_TIMESTAMP WHERE rowid = NEW.rowid; END;
CREATE TRIGGER product_price_log AFTER UPDATE OF price ON product
    WHEN NEW.price <> OLD.price BEGIN
    INSERT INTO price_history (product_id, old_price, new_price, note)
        VALUES (NEW.id, OLD.price, NEW.price, 'by ' || NEW.name); END;
CREATE TRIGGER product_count_ins AFTER INSERT ON product BEGIN
    UPDATE stats SET n = n + 1 WHERE name = 'products'; END;
CREATE TRIGGER product_count_del AFTER DELETE ON product BEGIN
    UPDATE stats SET n = n - 1 WHERE name = 'products'; END;
CREATE TRIGGER product_cascade BEFORE DELETE ON product FOR EACH ROW BEGIN
    DELETE FROM review WHERE product_id = OLD.id;
    DELETE FROM price_history WHERE product_id = OLD.id; END;
CREATE TRIGGER product_no_negative BEFORE UPDATE OF stock ON product BEGIN
    SELECT CASE WHEN NEW.stock < 0 THEN RAISE(ABORT, 'stock cannot go below zero') END; END;
CREATE TRIGGER review_range BEFORE INSERT ON review BEGIN
    SELECT RAISE(FAIL, 'stars must be 1 to 5') WHERE NEW.stars NOT BETWEEN 1 AND 5; END;
CREATE TRIGGER quarantine_ignore BEFORE INSERT ON quarantine WHEN NEW.name LIKE 'spam%' BEGIN
    SELECT RAISE(IGNORE); END;
CREATE TABLE product_archive (id INTEGER, name TEXT, price NUMERIC(8,2), reviews INTEGER);
CREATE TRIGGER product_archive BEFORE DELETE ON product BEGIN
    INSERT INTO product_archive SELECT p.id, upper(p.name), p.price,
        (SELECT count(*) FROM review r WHERE r.product_id = OLD.id)
        FROM product p WHERE p.id = OLD.id; END;
CREATE TRIGGER review_count AFTER INSERT ON review BEGIN
    INSERT OR IGNORE INTO stats (name, n) VALUES ('reviews', 0);
    UPDATE stats SET n = n + 1 WHERE name = 'reviews'; END;
INSERT INTO product (id, name, price, stock) VALUES (1, 'tea', 3.5, 10), (2, 'mug', 8, 2);
INSERT INTO review (product_id, stars) VALUES (1, 5), (2, 3);
"""

# the same statements on both sides, in order: (SQL, expected error text or None)
STEPS = [
    ("INSERT INTO product (id, name, price, stock) VALUES (3, 'pot', 20, 1)", None),
    ("UPDATE product SET price = 4 WHERE id = 1", None),
    ("UPDATE product SET price = 4 WHERE id = 1", None),  # WHEN: no change, no history row
    ("UPDATE product SET stock = stock - 5 WHERE id = 2", "stock cannot go below zero"),
    ("UPDATE product SET name = 'Mug' WHERE id = 2", None),  # not UPDATE OF price: no history
    ("INSERT INTO review (product_id, stars) VALUES (1, 9)", "stars must be 1 to 5"),
    ("INSERT INTO review (product_id, stars) VALUES (3, 4)", None),
    ("INSERT INTO quarantine (name) VALUES ('spam offer')", None),  # ignored
    ("INSERT INTO quarantine (name) VALUES ('fine')", None),
    ("DELETE FROM product WHERE id = 1", None),  # cascades to review and price_history
]

COMPARE = [
    "SELECT id, name, price, stock FROM product",
    "SELECT product_id, old_price, new_price, note FROM price_history",
    "SELECT name, n FROM stats",
    "SELECT product_id, stars FROM review",
    "SELECT name FROM quarantine",
    "SELECT id, name, price, reviews FROM product_archive",
]


def _run(cli, db: Path, pg_url: str):
    return cli("migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url, "--json")


def _apply(lite: sqlite3.Connection, conn: psycopg.Connection, sql: str, error: str | None):
    for side in ("sqlite", "postgresql"):
        try:
            if side == "sqlite":
                lite.execute(sql)
                lite.commit()
            else:
                conn.execute(sql)
        except (sqlite3.Error, psycopg.Error) as exc:
            assert error is not None and error in str(exc), (side, sql, exc)
        else:
            assert error is None, (side, sql, "no error")


def test_translated_triggers_do_what_sqlite_does(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "trig.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(SCHEMA)
    lite.close()
    result = _run(cli, db, pg_url)
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["failed_objects"] == []
    copy = tmp_path / "copy.db"  # the statements run on a copy: the source stays as it was
    copy.write_bytes(db.read_bytes())
    lite = sqlite3.connect(copy)
    with pg(pg_url) as conn:
        for sql, error in STEPS:
            _apply(lite, conn, sql, error)
        for q in COMPARE:
            assert rows(lite.execute(q).fetchall()) == rows(conn.execute(q).fetchall()), q
        # touch: a BEFORE trigger set the timestamp on the rows updated, only those
        touched = conn.execute("SELECT id FROM product WHERE touched IS NOT NULL").fetchall()
        assert sorted(r[0] for r in touched) == [2]
        fresh = conn.execute(
            "SELECT now() - touched < interval '1 minute' FROM product WHERE id = 2"
        ).fetchone()
        assert fresh == (True,)
        assert rows(lite.execute("SELECT id FROM product WHERE touched IS NOT NULL").fetchall())
    lite.close()


def test_untranslated_trigger_is_reported_with_sql_and_rollback_restores_target(
    cli, tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(
            """
            CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
            CREATE TABLE log (v TEXT);
            CREATE VIEW tv AS SELECT id, upper(v) FROM t;
            CREATE TRIGGER t_copy AFTER INSERT ON t BEGIN
                INSERT OR REPLACE INTO log SELECT v FROM t WHERE id = NEW.id; END;
            CREATE TRIGGER t_touch AFTER UPDATE ON t BEGIN
                UPDATE t SET v = datetime('now') WHERE rowid = NEW.rowid; END;
            INSERT INTO t (v) VALUES ('a'), ('b');
            """
        )
    lite.close()
    with pg(pg_url) as conn:
        conn.execute("CREATE TABLE keep_me (x int)")
        before = _catalog(conn)
    plan = cli("migrate-db", "plan", "--from", f"sqlite:///{db}", "--to", pg_url, "--json")
    skipped = json.loads(plan.stdout)["skipped"]
    assert any(
        s.startswith("trigger t_copy (not translated: INSERT OR REPLACE)")
        and "INSERT OR REPLACE INTO log SELECT v FROM t" in s
        for s in skipped
    ), skipped
    result = _run(cli, db, pg_url)
    assert result.exit_code == 3
    failed = json.loads(result.stdout)["failed_objects"]
    assert len(failed) == 1 and failed[0].startswith(
        "trigger t_copy on t not translated (INSERT OR REPLACE): CREATE TRIGGER"
    )
    with pg(pg_url) as conn:
        assert conn.execute('SELECT "upper(v)" FROM tv ORDER BY id').fetchall() == [
            ("A",),
            ("B",),
        ]
        assert _catalog(conn) != before
    rollback = cli("migrate-db", "rollback", "--to", pg_url, "--yes")
    assert rollback.exit_code == 0, rollback.stderr
    with pg(pg_url) as conn:
        assert _catalog(conn) == before
    # the cast file settles it: the user's own PostgreSQL for the trigger, or "" to leave it out
    casts = tmp_path / "casts.toml"
    for sql, exists in (
        (
            "CREATE FUNCTION t_copy_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO log SELECT NEW.v; RETURN NULL; END $$; "
            "CREATE TRIGGER t_copy AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION t_copy_fn()",
            True,
        ),
        ("", False),
    ):
        casts.write_text(f"[trigger.t_copy]\nsql = {json.dumps(sql)}\n")
        again = cli(
            "migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url, "--cast", str(casts)
        )
        assert again.exit_code == 0, again.stdout + again.stderr
        verified = cli("migrate-db", "verify", "--from", f"sqlite:///{db}", "--to", pg_url)
        assert verified.exit_code == 0, verified.stdout
        with pg(pg_url) as conn:
            conn.execute("INSERT INTO t (v) VALUES ('c')")
            assert conn.execute("SELECT count(*) FROM log").fetchone() == (2 + int(exists),)
        assert cli("migrate-db", "rollback", "--to", pg_url, "--yes").exit_code == 0
    with pg(pg_url) as conn:
        assert {n for n in _catalog(conn) if n[1] != "t_copy_fn"} == before


def _catalog(conn: psycopg.Connection) -> set[tuple[str, str]]:
    """Every relation, function and trigger in the current schema."""
    rels = conn.execute(
        "SELECT 'rel', relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
    ).fetchall()
    procs = conn.execute(
        "SELECT 'fn', proname FROM pg_proc WHERE pronamespace = current_schema()::regnamespace"
    ).fetchall()
    trigs = conn.execute(
        "SELECT 'trigger', tgname FROM pg_trigger WHERE NOT tgisinternal"
    ).fetchall()
    return set(rels) | set(procs) | set(trigs)


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        (
            "CREATE TRIGGER x INSTEAD OF INSERT ON v BEGIN SELECT 1; END",
            "INSTEAD OF triggers (on views) are not translated",
        ),
        (
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN "
            "INSERT OR REPLACE INTO t VALUES (1, 'a'); END",
            "INSERT OR REPLACE",
        ),
        (
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT RAISE(IGNORE); END",
            "RAISE(IGNORE) outside a BEFORE trigger",
        ),
    ],
)
def test_trigger_shapes_outside_the_list_name_their_reason(sql: str, reason: str) -> None:
    from emrops.migrate.sql import Catalog, TranslationError
    from emrops.migrate.sql.triggers import translate

    catalog = Catalog()
    catalog.add("t", "t", [("id", "id", "bigint"), ("v", "v", "text")], rowid="id", key=["id"])
    catalog.add("v", "v", [("id", "id", "bigint")])
    with pytest.raises(TranslationError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        translate(catalog, sql, "x", "x_fn")


def test_online_replay_does_not_fire_translated_triggers(cli, tmp_path: Path, pg_url: str) -> None:
    """Rows replayed at cutover already carry what SQLite's triggers did: a touch trigger
    firing again on PostgreSQL would stamp the replay's time and verification would fail."""
    db = tmp_path / "online.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(
            """
            CREATE TABLE emrops_control (key VARCHAR(100) PRIMARY KEY, value JSON NOT NULL,
                updated_at DATETIME NOT NULL);
            CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, touched DATETIME);
            CREATE TABLE stats (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
            CREATE TRIGGER t_touch AFTER UPDATE ON t BEGIN
                UPDATE t SET touched = '2000-01-01 00:00:00' WHERE rowid = NEW.rowid; END;
            CREATE TRIGGER t_count AFTER INSERT ON t BEGIN
                UPDATE stats SET n = n + 1 WHERE name = 't'; END;
            INSERT INTO stats VALUES ('t', 0);
            INSERT INTO t (v, touched) VALUES ('a', '2024-01-01 00:00:00');
            """
        )
    lite.close()
    src = f"sqlite:///{db}"
    run = cli("migrate-db", "run", "--from", src, "--to", pg_url, "--online", "--json")
    assert run.exit_code == 0, run.stderr
    lite = sqlite3.connect(db)
    lite.execute("INSERT INTO t (v, touched) VALUES ('b', '2024-02-02 00:00:00')")
    lite.execute("UPDATE t SET v = 'A' WHERE id = 1")  # the trigger stamps 2000-01-01
    lite.commit()
    cut = cli("migrate-db", "cutover", "--from", src, "--to", pg_url, "--json")
    assert cut.exit_code == 0, cut.stdout + cut.stderr
    with pg(pg_url) as conn:
        for q in ("SELECT id, v, touched FROM t", "SELECT name, n FROM stats"):
            assert rows(lite.execute(q).fetchall()) == rows(conn.execute(q).fetchall()), q
        assert conn.execute("SELECT n FROM stats").fetchone() == (2,)
        conn.execute("UPDATE t SET v = 'z' WHERE id = 2")  # and they work after cutover
        assert conn.execute("SELECT touched FROM t WHERE id = 2").fetchone()[0].year == 2000
    lite.close()


def test_a_body_writing_its_own_table_does_not_recurse(cli, tmp_path: Path, pg_url: str) -> None:
    """SQLite fires no trigger for its own body's writes; PostgreSQL would, without end."""
    db = tmp_path / "tree.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(
            """
            CREATE TABLE node (id INTEGER PRIMARY KEY, parent INTEGER, hits INTEGER NOT NULL);
            CREATE TRIGGER node_bubble AFTER UPDATE OF hits ON node BEGIN
                UPDATE node SET hits = hits + 1 WHERE id = NEW.parent; END;
            CREATE TRIGGER node_prune AFTER DELETE ON node BEGIN
                DELETE FROM node WHERE parent = OLD.id; END;
            INSERT INTO node VALUES (1, NULL, 0), (2, 1, 0), (3, 2, 0), (4, 3, 0);
            """
        )
    lite.close()
    result = _run(cli, db, pg_url)
    assert result.exit_code == 0, result.stderr
    copy = tmp_path / "copy.db"
    copy.write_bytes(db.read_bytes())
    lite = sqlite3.connect(copy)
    with pg(pg_url) as conn:
        for sql in ("UPDATE node SET hits = 5 WHERE id = 4", "DELETE FROM node WHERE id = 2"):
            _apply(lite, conn, sql, None)
        q = "SELECT id, parent, hits FROM node"
        assert rows(lite.execute(q).fetchall()) == rows(conn.execute(q).fetchall())
        # 3 got one hit (not passed on to 2) and went with 2; 4 stayed (no second prune)
        assert rows(conn.execute(q).fetchall()) == [(1, None, 0), (4, 3, 5)]
        assert conn.execute("SELECT hits FROM node WHERE id = 1").fetchone() == (0,)
    lite.close()


def test_a_function_of_the_same_name_is_never_replaced_or_dropped(
    cli, tmp_path: Path, pg_url: str
) -> None:
    db = tmp_path / "clash.db"
    with sqlite3.connect(db) as lite:
        lite.executescript(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER);"
            "CREATE TABLE c (k TEXT PRIMARY KEY, n INTEGER);"
            "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN UPDATE c SET n = n + 1; END;"
        )
    lite.close()
    with pg(pg_url) as conn:
        conn.execute("CREATE FUNCTION t_ins_fn() RETURNS int LANGUAGE sql AS 'SELECT 42'")
    result = _run(cli, db, pg_url)
    assert result.exit_code == 3
    failed = json.loads(result.stdout)["failed_objects"]
    assert len(failed) == 1 and failed[0].startswith("trigger t_ins on t: function ")
    assert cli("migrate-db", "rollback", "--to", pg_url, "--yes").exit_code == 0
    with pg(pg_url) as conn:
        assert conn.execute("SELECT t_ins_fn()").fetchone() == (42,)
