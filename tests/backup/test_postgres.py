"""PostgreSQL: pg_dump of an exported snapshot, verify in a scratch database, restore."""

from __future__ import annotations

import psycopg
import pytest

from tests.backup.conftest import json_of, listed, run_backup, write_resealed
from tests.conftest import create_pg_database, drop_pg_database


def pg_counts(url: str) -> dict[str, int]:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}  # type: ignore[index]


def test_run_verify_and_restore_postgres(cli, seeded_pg: str, store, tmp_path) -> None:
    manifest = run_backup(cli, seeded_pg, store)
    assert manifest["engine"] == "postgresql" and manifest["schema_revision"] == "0001_initial"
    assert manifest["row_counts"]["messages"] == 200
    assert (
        manifest["engine_info"]["server_version"]
        and "pg_dump" in manifest["engine_info"]["pg_dump_version"]
    )
    roles = [f["name"] for f in manifest["files"]]
    assert roles[0] == "database.pgdump.zst"
    assert (
        manifest["engine_info"]["globals"] == "ok" and roles[1] == "globals.sql.zst"
    )  # superuser here

    [result] = json_of(
        cli("backup", "verify", "--latest", "--db", seeded_pg, "--store", str(store), "--json")
    )
    assert result["ok"] is True
    assert [c["name"] for c in result["checks"]] == [
        "manifest seal",
        "checksum database.pgdump.zst",
        "pg_restore",
        "row counts",
        "checksum globals.sql.zst",
    ]

    before = pg_counts(seeded_pg)
    dsn = seeded_pg.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute("DELETE FROM vitals")
    refused = cli(
        "backup", "restore", manifest["id"], "--target", seeded_pg, "--yes", "--store", str(store)
    )
    assert refused.exit_code == 1 and "already holds data (8 tables" in refused.stderr
    done = json_of(
        cli(
            "backup",
            "restore",
            manifest["id"],
            "--target",
            seeded_pg,
            "--yes",
            "--force",
            "--json",
            "--store",
            str(store),
        )
    )
    after = pg_counts(seeded_pg)
    assert after.pop("emrops_control") == 1 and before.pop("emrops_control") == 0  # the flag's row
    assert after == before
    safety = {e["id"]: e for e in listed(cli, store)}[done["safety_backup_id"]]
    assert safety["engine"] == "postgresql" and safety["label"].startswith(
        "safety copy before restore"
    )
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT value FROM emrops_control WHERE key = 'maintenance'").fetchone()
    assert (
        row is not None and row[0]["on"] is False
    )  # maintenance was on during the swap, off again


def test_restore_postgres_into_a_new_database(cli, seeded_pg: str, store) -> None:
    backup_id = run_backup(cli, seeded_pg, store)["id"]
    name = create_pg_database("emrops_restore")
    drop_pg_database(name)  # restore creates it
    target = seeded_pg.rsplit("/", 1)[0] + "/" + name
    try:
        plan = json_of(
            cli(
                "backup",
                "restore",
                backup_id,
                "--target",
                target,
                "--dry-run",
                "--json",
                "--store",
                str(store),
            )
        )["plan"]
        assert plan["refusals"] == [] and f"create database {name}" in plan["steps"]
        json_of(
            cli(
                "backup",
                "restore",
                backup_id,
                "--target",
                target,
                "--yes",
                "--json",
                "--store",
                str(store),
            )
        )
        assert pg_counts(target)["messages"] == 200
    finally:
        drop_pg_database(name)


def test_verify_postgres_without_a_server(cli, seeded_pg: str, store, tmp_path) -> None:
    backup_id = run_backup(cli, seeded_pg, store)["id"]
    result = cli(
        "backup", "verify", backup_id, "--store", str(store), "--db", f"sqlite:///{tmp_path}/x.db"
    )
    assert result.exit_code == 2
    assert "is a PostgreSQL backup: verify restores it into a scratch database" in result.stderr


@pytest.mark.parametrize("damage", ["dump"])
def test_damaged_dump_fails_pg_restore(cli, seeded_pg: str, store, damage: str) -> None:
    import io
    import json

    import zstandard

    manifest = run_backup(cli, seeded_pg, store)
    path = store / manifest["id"] / "database.pgdump.zst"
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read()
    broken = raw[: len(raw) // 2]  # a dump cut in half, stored with a matching checksum
    packed = zstandard.ZstdCompressor(write_checksum=True).compress(broken)
    path.write_bytes(packed)
    import hashlib

    doc = json.loads((store / manifest["id"] / "manifest.json").read_text())
    doc["files"][0].update(size=len(packed), sha256=hashlib.sha256(packed).hexdigest())
    write_resealed(store / manifest["id"] / "manifest.json", doc)
    result = cli("backup", "verify", manifest["id"], "--db", seeded_pg, "--store", str(store))
    assert result.exit_code == 3 and "pg_restore:" in result.stderr


def test_a_user_without_select_gets_pg_dumps_own_error_and_a_hint(cli, tmp_path) -> None:
    """pg_dump's stderr ends with "detail: Query was: LOCK TABLE ..."; the error shown is its
    "permission denied" line, with what to grant; nothing is published."""
    import psycopg

    from tests.conftest import PG_ADMIN_DSN, PG_HOST, create_pg_database, drop_pg_database

    name = create_pg_database()
    role = f"weak_{name[-8:]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, dbname=name, autocommit=True) as conn:
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute("CREATE TABLE secret (x int)")
        store = tmp_path / "store"
        result = cli(
            "backup", "run", "--db", f"postgresql+psycopg://{role}@{PG_HOST}/{name}",
            "--store", str(store),
        )  # fmt: skip
        assert result.exit_code == 1, result.stderr
        assert "permission denied for table secret" in result.stderr
        assert "SELECT on every table" in result.stderr
        assert not list(store.glob("*/manifest.json")) if store.exists() else True
    finally:
        drop_pg_database(name)
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
            c.execute(f'DROP ROLE IF EXISTS "{role}"')


def _restore_force(cli, backup_id: str, target: str, store) -> dict:
    return json_of(
        cli(
            "backup", "restore", backup_id, "--target", target, "--yes", "--force", "--json",
            "--store", str(store),
        )
    )  # fmt: skip


def test_restore_postgres_returns_to_the_backups_state(cli, seeded_pg: str, store) -> None:
    """Objects created after the backup (a later migration): a table whose foreign key
    references a backed-up table made pg_restore --clean fail; without one, the table stayed.
    Both are dropped in the restore's transaction, their rows kept in the safety backup."""
    backup_id = run_backup(cli, seeded_pg, store)["id"]
    before = pg_counts(seeded_pg)
    dsn = seeded_pg.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        conn.execute(
            'CREATE TABLE "later notes" (id int PRIMARY KEY, '
            "message_id bigint REFERENCES messages (id), body text)"
        )
        conn.execute(
            "INSERT INTO \"later notes\" SELECT 1, id, 'x' FROM messages ORDER BY id LIMIT 1"
        )
        conn.execute("CREATE TABLE audit_later (n int)")
        conn.execute("CREATE VIEW recent AS SELECT id FROM messages ORDER BY id DESC LIMIT 5")
        conn.execute("DELETE FROM vitals")
    done = _restore_force(cli, backup_id, seeded_pg, store)
    after = pg_counts(seeded_pg)
    after.pop("emrops_control"), before.pop("emrops_control")
    assert after == before  # the backup's tables, rows and nothing else
    assert any(
        "dropped 3 relation(s)" in n and "public.later notes" in n and "public.recent" in n
        for n in done["notes"]
    ), done["notes"]
    import json

    safety = json.loads((store / done["safety_backup_id"] / "manifest.json").read_text())
    assert safety["row_counts"]["later notes"] == 1  # the dropped rows are kept there


def test_a_restore_script_cut_short_commits_nothing(tmp_path) -> None:
    """pg_restore failing part-way through a cut archive (its script already half sent):
    the transaction ends in ROLLBACK, so the target keeps its rows and the relations the
    restore dropped first."""
    import subprocess

    from emrops.backup.pgrestore import restore_exact

    source, target = create_pg_database("emrops_cut_src"), create_pg_database("emrops_cut_dst")
    base = "postgresql://postgres@127.0.0.1/"
    try:
        with psycopg.connect(base + source, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
            conn.execute(
                "INSERT INTO t SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 20000) g"
            )
            conn.execute("CREATE TABLE u (id int)")
            conn.execute("INSERT INTO u SELECT generate_series(1, 20000)")
        archive = tmp_path / "db.pgdump"
        subprocess.run(
            ["pg_dump", "-Fc", "-Z0", "-f", str(archive), "-d", base + source], check=True
        )
        cut = tmp_path / "cut.pgdump"
        data = archive.read_bytes()
        cut.write_bytes(data[: len(data) * 2 // 3])
        with psycopg.connect(base + target, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY, body text)")
            conn.execute("INSERT INTO t VALUES (1, 'mine')")
            conn.execute("CREATE TABLE extra (n int)")
            conn.execute("INSERT INTO extra VALUES (7)")
        done = restore_exact(cut, f"postgresql+psycopg://postgres@127.0.0.1/{target}")
        assert done.code != 0 and done.message, done.message
        assert done.dropped == ["public.extra"]
        with psycopg.connect(base + target) as conn:
            assert conn.execute("SELECT * FROM t").fetchall() == [(1, "mine")]
            assert conn.execute("SELECT * FROM extra").fetchall() == [(7,)]
            assert conn.execute("SELECT to_regclass('u')").fetchone() == (None,)
        # the whole archive restores, and the target is then the source's state
        done = restore_exact(archive, f"postgresql+psycopg://postgres@127.0.0.1/{target}")
        assert done.code == 0, done.message
        with psycopg.connect(base + target) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (20000,)
            assert conn.execute("SELECT to_regclass('extra')").fetchone() == (None,)
    finally:
        drop_pg_database(source)
        drop_pg_database(target)


def test_a_table_the_backup_user_cannot_read_fails_with_a_hint(cli, store) -> None:
    """A table the user may only INSERT into: the backup fails (exit 1) naming the table, with
    what to grant (it said "permission denied for table ..." and nothing else)."""
    name = create_pg_database("emrops_perm")
    base = "postgresql://postgres@127.0.0.1/"
    try:
        with psycopg.connect(base + name, autocommit=True) as conn:
            conn.execute(
                "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'emrops_bk') "
                "THEN CREATE ROLE emrops_bk LOGIN; END IF; END$$"
            )
            conn.execute("CREATE TABLE ok (n int)")
            conn.execute("CREATE TABLE secret (n int)")
            conn.execute("GRANT SELECT ON ok TO emrops_bk")
            conn.execute("GRANT INSERT ON secret TO emrops_bk")
        result = cli(
            "backup", "run", "--db", f"postgresql+psycopg://emrops_bk@127.0.0.1/{name}",
            "--store", str(store),
        )  # fmt: skip
        assert result.exit_code == 1, result.stderr
        assert "permission denied for table secret" in result.stderr
        assert "SELECT on every table" in result.stderr
    finally:
        drop_pg_database(name)
        with psycopg.connect(base + "postgres", autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS emrops_bk")


def test_forced_row_level_security_fails_with_a_hint(cli, store) -> None:
    """A table with FORCE ROW LEVEL SECURITY, owned by the backup user: pg_dump refuses it
    (a dump would silently miss rows); the failure says what would let it read them."""
    name = create_pg_database("emrops_rls")
    base = "postgresql://postgres@127.0.0.1/"
    try:
        with psycopg.connect(base + name, autocommit=True) as conn:
            conn.execute(
                "DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'emrops_rl') "
                "THEN CREATE ROLE emrops_rl LOGIN; END IF; END$$"
            )
            conn.execute("GRANT CREATE ON SCHEMA public TO emrops_rl")
        with psycopg.connect(f"postgresql://emrops_rl@127.0.0.1/{name}", autocommit=True) as conn:
            conn.execute("CREATE TABLE t (n int)")
            conn.execute("INSERT INTO t VALUES (1), (-1)")
            conn.execute("ALTER TABLE t ENABLE ROW LEVEL SECURITY")
            conn.execute("ALTER TABLE t FORCE ROW LEVEL SECURITY")
            conn.execute("CREATE POLICY positive ON t USING (n > 0)")
        result = cli(
            "backup", "run", "--db", f"postgresql+psycopg://emrops_rl@127.0.0.1/{name}",
            "--store", str(store),
        )  # fmt: skip
        assert result.exit_code == 1, result.stderr
        assert "row-level security" in result.stderr and "BYPASSRLS" in result.stderr
    finally:
        drop_pg_database(name)
        with psycopg.connect(base + "postgres", autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS emrops_rl")
