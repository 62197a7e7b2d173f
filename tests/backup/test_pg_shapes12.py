"""PostgreSQL databases shaped unlike EMRsim's, through backup, verify and restore: schemas and
tables with dots, quotes and spaces in their names, partitions, inheritance, enums, domains,
generated columns, unlogged tables, materialized views (one never populated), row-level
security and large objects. An in-place `restore --force` used to leave the large objects made
after the backup in the target (and the ones the backup held with their later contents when
pg_restore's unlink found them changed), and said nothing of the schemas, functions, types and
extensions made after the backup that it leaves in place."""

from __future__ import annotations

import psycopg

from tests.backup.conftest import json_of, run_backup
from tests.conftest import create_pg_database, drop_pg_database

SHAPES = r'''
CREATE EXTENSION IF NOT EXISTS citext;
CREATE SCHEMA "we.ird ""s""";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TABLE "we.ird ""s"""."T a.b" (
    id serial PRIMARY KEY, m mood, p posint, c citext, j jsonb,
    g int GENERATED ALWAYS AS (p * 2) STORED);
INSERT INTO "we.ird ""s"""."T a.b" (m, p, c, j)
    SELECT 'ok', i, 'Hi' || i, jsonb_build_object('i', i) FROM generate_series(1, 300) i;
CREATE TABLE meas (ts date NOT NULL, v float8) PARTITION BY RANGE (ts);
CREATE TABLE meas_2024 PARTITION OF meas FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE meas_2025 PARTITION OF meas FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO meas SELECT DATE '2024-01-01' + (i % 700), i::float8 / 3 FROM generate_series(1, 900) i;
CREATE TABLE parent (id int, v text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent VALUES (1, 'p');
INSERT INTO child VALUES (2, 'c', 9);
CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text);
INSERT INTO cache SELECT i::text, repeat('x', 50) FROM generate_series(1, 40) i;
CREATE MATERIALIZED VIEW mv_nodata AS SELECT count(*) FROM parent WITH NO DATA;
CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n FROM parent;
CREATE TABLE secret (id int, owner text);
ALTER TABLE secret ENABLE ROW LEVEL SECURITY;
CREATE POLICY p ON secret USING (owner = current_user);
INSERT INTO secret VALUES (1, 'nobody');
CREATE TABLE "select" ("from" int, "Mixed" text);
INSERT INTO "select" VALUES (1, E'line\nbreak\ttab\\back');
SELECT lo_from_bytea(424242, 'held by the backup');
'''

FINGERPRINT = [
    'SELECT count(*), sum(g), sum(length(c)) FROM "we.ird ""s"""."T a.b"',
    "SELECT count(*), sum(v) FROM meas",
    "SELECT count(*) FROM ONLY parent",
    "SELECT count(*) FROM parent",
    "SELECT count(*) FROM cache",
    "SELECT n FROM mv",
    "SELECT ispopulated FROM pg_matviews WHERE matviewname = 'mv_nodata'",
    "SELECT count(*) FROM secret",
    'SELECT "Mixed" FROM "select"',
    "SELECT oid::int, encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata ORDER BY 1",
    'SELECT last_value FROM "we.ird ""s"""."T a.b_id_seq"',
]


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _fingerprint(url: str) -> list[object]:
    with psycopg.connect(_dsn(url)) as conn:
        return [conn.execute(q).fetchall() for q in FINGERPRINT]


def _pg(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


def test_odd_shapes_back_up_verify_and_restore_into_a_new_database(cli, tmp_path) -> None:
    src, new = create_pg_database(), create_pg_database()
    drop_pg_database(new)  # the restore creates it
    try:
        with psycopg.connect(_dsn(_pg(src)), autocommit=True) as conn:
            conn.execute(SHAPES)
        before = _fingerprint(_pg(src))
        store = tmp_path / "store"
        manifest = run_backup(cli, _pg(src), store)
        assert manifest["row_counts"]['"we.ird ""s"""."T a.b"'] == 300
        assert manifest["row_counts"]["meas"] == 900 and manifest["row_counts"]["child"] == 1
        checked = cli("backup", "verify", manifest["id"], "--db", _pg(src), "--store", str(store))
        assert checked.exit_code == 0, checked.stderr
        done = cli(
            "backup", "restore", manifest["id"], "--target", _pg(new), "--store", str(store),
            "--yes",
        )  # fmt: skip
        assert done.exit_code == 0, done.stderr
        assert _fingerprint(_pg(new)) == before
    finally:
        drop_pg_database(src)
        drop_pg_database(new)


def test_restore_force_returns_large_objects_to_the_backup_and_names_what_it_leaves(
    cli, tmp_path
) -> None:
    src = create_pg_database()
    try:
        with psycopg.connect(_dsn(_pg(src)), autocommit=True) as conn:
            conn.execute(SHAPES)
        before = _fingerprint(_pg(src))
        store = tmp_path / "store"
        backup_id = run_backup(cli, _pg(src), store)["id"]
        with psycopg.connect(_dsn(_pg(src)), autocommit=True) as conn:
            conn.execute(
                # after the backup: a new large object, the backup's one rewritten, and
                # objects the restore does not drop
                "SELECT lo_from_bytea(515151, 'made after the backup');"
                "SELECT lo_put(424242, 0, 'CHANGED');"
                "CREATE SCHEMA later_schema;"
                "CREATE FUNCTION later_fn(a int, b text) RETURNS int LANGUAGE sql AS 'SELECT a';"
                "CREATE TYPE later_type AS (x int);"
                "CREATE DOMAIN later_domain AS text;"
                "DELETE FROM meas; DROP TABLE child;"
            )
        done = json_of(
            cli(
                "backup", "restore", backup_id, "--target", _pg(src), "--store", str(store),
                "--yes", "--force", "--json",
            )
        )  # fmt: skip
        # before: 2 large objects, the backup's with 'CHANGED' over its first bytes
        assert _fingerprint(_pg(src)) == before
        notes = " | ".join(done["notes"])
        assert "removed 1 large object(s) the backup does not hold" in notes, notes
        assert "left in place 4 object(s) the backup does not hold" in notes, notes
        for shown in (
            "schema later_schema",
            "function later_fn(integer,text)",
            "type later_type",
            "domain later_domain",
        ):
            assert shown in notes, notes
        assert "citext" not in notes and "posint" not in notes and "mood" not in notes
        # the safety backup holds what the restore removed
        safety = done["safety_backup_id"]
        other = create_pg_database()
        drop_pg_database(other)
        try:
            back = cli(
                "backup", "restore", safety, "--target", _pg(other), "--store", str(store),
                "--yes",
            )  # fmt: skip
            assert back.exit_code == 0, back.stderr
            with psycopg.connect(_dsn(_pg(other))) as conn:
                blobs = conn.execute(
                    "SELECT oid::int, encode(lo_get(oid), 'escape') FROM pg_largeobject_metadata "
                    "ORDER BY 1"
                ).fetchall()
            assert blobs == [(424242, "CHANGED the backup"), (515151, "made after the backup")]
        finally:
            drop_pg_database(other)
    finally:
        drop_pg_database(src)
