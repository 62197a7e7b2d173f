"""End to end on a hostile SQLite database: plan, run, verify, status, rollback."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import pg, sha256
from tests.migrate.zoo import LONG_A


def test_plan_flags_anomalies_with_table_key_column(cli, dirty_zoo: Path, pg_url: str) -> None:
    before = sha256(dirty_zoo)
    result = cli("migrate-db", "plan", "--from", f"sqlite:///{dirty_zoo}", "--to", pg_url, "--json")
    assert result.exit_code == 3, result.stderr
    data = json.loads(result.stdout)
    found = {(a["table"], a["column"], a["condition"]): a for a in data["anomalies"]}
    assert found[("dirty", "n", "text")]["key"] == {"rowid": 2}
    assert found[("dirty", "n", "text")]["value"] == "not-a-number"
    assert found[("dirty", "t", "nul")]["value"] == "nul\\x00byte"  # reported, not truncated
    assert found[("dirty", "u", "bad_utf8")]["count"] == 1
    assert ("mixed", "anything", "mixed") in found
    assert result.stderr.startswith("Error: 4 column anomaly(ies) without a cast rule; first:")
    assert sha256(dirty_zoo) == before


def test_plan_clean_with_casts_and_emit_sql(
    cli, zoo: Path, casts: Path, tmp_path: Path, pg_url: str
) -> None:
    out = tmp_path / "plan.sql"
    result = cli(
        "migrate-db",
        "plan",
        "--from",
        f"sqlite:///{zoo}",
        "--to",
        pg_url,
        "--cast",
        str(casts),
        "--emit-sql",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    sql = out.read_text()
    assert (
        'CREATE INDEX IF NOT EXISTS "users_active_email" ON "users" ("email") WHERE "active" = TRUE'
        in sql
    )
    assert '"users_lower_email" ON "users" ((LOWER("email")))' in sql
    assert '"score" double precision' in sql and '"active" boolean NOT NULL DEFAULT true' in sql
    assert '"created_at" timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP' in sql
    assert 'CHECK ("qty" > 0)' in sql and "ON DELETE CASCADE" in sql
    assert "rename column" in result.stdout and LONG_A[:30] in result.stdout
    with pg(pg_url) as conn:
        conn.execute("CREATE TABLE wide (x int)")
    again = cli(
        "migrate-db",
        "plan",
        "--from",
        f"sqlite:///{zoo}",
        "--to",
        pg_url,
        "--cast",
        str(casts),
        "--json",
    )
    # a table no emrops run created: run would refuse to start, so plan exits 3 (it said
    # exit 0 with a note before)
    assert again.exit_code == 3
    assert json.loads(again.stdout)["target_conflicts"] == ["wide"]
    assert "no emrops run created: wide" in again.stderr
    down = cli(
        "migrate-db",
        "plan",
        "--from",
        f"sqlite:///{zoo}",
        "--to",
        "postgresql+psycopg://postgres@127.0.0.1:1/x",
        "--cast",
        str(casts),
    )
    assert down.exit_code == 1 and "Error: cannot connect to" in down.stderr


def test_run_verify_status_rollback(cli, zoo: Path, casts: Path, pg_url: str) -> None:
    before = sha256(zoo)
    src = f"sqlite:///{zoo}"
    result = cli(
        "migrate-db",
        "run",
        "--from",
        src,
        "--to",
        pg_url,
        "--cast",
        str(casts),
        "--json",
        "--jobs",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] and data["verify"]["problems"] == []
    assert data["snapshot"] is None  # an offline run reads the source in place
    # the pre-migration backup is a real, pinned `backup run` in the configured store
    listed = cli("backup", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert data["backup_id"] and data["backup_id"] in listed.stdout
    assert (Path("backups") / data["backup_id"] / "pin.json").exists()
    with pg(pg_url) as conn:
        assert conn.execute("SELECT score FROM users WHERE id = 1").fetchone()[0] == 70.123456789012
        row = conn.execute(
            "SELECT active, prefs->'a'->>2, created_at::text, avatar FROM users WHERE id = 1"
        ).fetchone()
        assert row == (True, "x", "2024-01-02 03:04:05+00", b"\x00\x01\xff")
        assert (
            conn.execute("SELECT created_at::text FROM users WHERE id = 2").fetchone()[0]
            == "2024-02-03 04:05:06.123456+00"
        )
        assert (
            conn.execute("SELECT sent_epoch::text FROM shipments WHERE id = 1").fetchone()[0]
            == "2023-11-14 22:13:20+00"
        )
        assert conn.execute("SELECT anything FROM mixed ORDER BY label").fetchall() == [
            ("1",),
            ("3.5",),
            ("two",),
        ]
        # NOT NULL kept, partial index kept with its WHERE, names kept
        nullable = dict(
            conn.execute(
                "SELECT column_name, is_nullable FROM "
                "information_schema.columns WHERE table_name = 'users'"
            )
        )
        assert nullable["email"] == "NO" and nullable["score"] == "YES"
        indexdef = dict(conn.execute("SELECT indexname, indexdef FROM pg_indexes"))
        assert "WHERE (active = true)" in indexdef["users_active_email"]
        assert "lower(email)" in indexdef["users_lower_email"]
        # identity past max(id) and past sqlite_sequence
        assert (
            conn.execute(
                "INSERT INTO users (email, name, created_at) VALUES "
                "('new@x', 'N', now()) RETURNING id"
            ).fetchone()[0]
            == 4
        )
        assert (
            conn.execute("INSERT INTO empty_auto (v) VALUES ('a') RETURNING id").fetchone()[0] == 1
        )
        conn.execute("DELETE FROM users WHERE email = 'new@x'")
        conn.execute("DELETE FROM empty_auto")
        assert conn.execute("SELECT count(*) FROM active_users").fetchone()[0] == 2
        assert conn.execute('SELECT count(*) FROM "order items"').fetchone()[0] == 3
        assert (
            conn.execute(
                "SELECT convalidated FROM pg_constraint WHERE conname = "
                "'shipments_order_no_line_no_fkey'"
            ).fetchone()[0]
            is True
        )
    verify = cli("migrate-db", "verify", "--from", src, "--to", pg_url)
    assert verify.exit_code == 0, verify.stderr
    status = cli("migrate-db", "status", "--to", pg_url, "--json")
    assert status.exit_code == 0
    st = json.loads(status.stdout)
    assert st["state"] == "done" and {t["table"] for t in st["tables"]} >= {"users", "order items"}
    again = cli("migrate-db", "run", "--from", src, "--to", pg_url, "--cast", str(casts))
    assert again.exit_code == 1
    assert "Error: the target already holds an emrops migration" in again.stderr
    no_tty = cli("migrate-db", "rollback", "--to", pg_url)
    assert no_tty.exit_code == 2
    rb = cli("migrate-db", "rollback", "--to", pg_url, "--yes", "--json")
    assert rb.exit_code == 0 and json.loads(rb.stdout)["rolled_back"] is True
    with pg(pg_url) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
                "n.oid = c.relnamespace WHERE nspname = 'public'"
            ).fetchone()[0]
            == 0
        )
    rb2 = cli("migrate-db", "rollback", "--to", pg_url, "--yes", "--json")
    assert rb2.exit_code == 0 and json.loads(rb2.stdout)["empty"] is True
    assert sha256(zoo) == before


def test_verify_names_changed_missing_and_extra_rows(
    cli, zoo: Path, casts: Path, pg_url: str
) -> None:
    src = f"sqlite:///{zoo}"
    assert (
        cli("migrate-db", "run", "--from", src, "--to", pg_url, "--cast", str(casts)).exit_code == 0
    )
    with pg(pg_url) as conn:
        conn.execute("UPDATE users SET name = 'Changed' WHERE id = 2")
        conn.execute('DELETE FROM "order items" WHERE "order" = 2')
        conn.execute("INSERT INTO mixed VALUES ('extra', 'x')")
    result = cli("migrate-db", "verify", "--from", src, "--to", pg_url, "--json")
    assert result.exit_code == 3
    problems = json.loads(result.stdout)["problems"]
    text = "\n".join(problems)
    assert "changed: users (id=2): column name differs" in text
    assert "missing in target: order items (order=2, select=1)" in text
    assert "mixed: 3 rows in the source, 4 in the target" in text
    assert "extra in target: mixed" in text
    assert result.stderr.startswith("Error: ")
    # a value written into the source since the run that no longer fits its plan
    conn = sqlite3.connect(zoo)
    conn.execute("UPDATE users SET created_at = 'garbage' WHERE id = 3")
    conn.commit()
    conn.close()
    again = cli("migrate-db", "verify", "--from", src, "--to", pg_url, "--json")
    assert again.exit_code == 3
    assert "users: 1 rows cannot be converted now, 0 were rejected by the run" in again.stdout


def test_bad_inputs(
    cli, tmp_path: Path, zoo: Path, dirty_zoo: Path, casts: Path, pg_url: str
) -> None:
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello, I am not a database " * 100)
    r = cli("migrate-db", "plan", "--from", f"sqlite:///{not_db}", "--to", pg_url)
    assert r.exit_code == 2 and "is not an SQLite database" in r.stderr
    r = cli("migrate-db", "run", "--from", f"sqlite:///{tmp_path / 'missing.db'}", "--to", pg_url)
    assert r.exit_code == 2 and "source database not found" in r.stderr
    r = cli(
        "migrate-db",
        "run",
        "--from",
        f"sqlite:///{zoo}",
        "--to",
        "postgresql+psycopg://postgres@127.0.0.1:1/nowhere",
    )
    assert r.exit_code == 1 and r.stderr.startswith("Error: cannot connect to")
    assert "Try: check that PostgreSQL is running" in r.stderr
    before = sha256(dirty_zoo)
    r = cli("migrate-db", "run", "--from", f"sqlite:///{dirty_zoo}", "--to", pg_url)
    assert r.exit_code == 3
    assert "table mixed, row {'rowid': 1}, column anything" in r.stderr
    with pg(pg_url) as conn:  # refused before touching the target
        assert conn.execute("SELECT to_regclass('emrops_migration')").fetchone()[0] is None
        conn.execute("CREATE TABLE users (id int)")  # someone else's table of the same name
    assert sha256(dirty_zoo) == before
    # a refused run leaves no snapshot and no backup behind
    assert not any(Path(".emrops/migrate").glob("*/pre-migration.db"))
    assert not any(Path("backups").glob("*/manifest.json"))
    r = cli("migrate-db", "run", "--from", f"sqlite:///{zoo}", "--to", pg_url, "--cast", str(casts))
    assert r.exit_code == 1 and "Error: the target already has tables: users" in r.stderr


def test_reject_mode_writes_rejects_and_exits_3(
    cli, dirty_zoo: Path, tmp_path: Path, pg_url: str
) -> None:
    rejects = tmp_path / "rejects.jsonl"
    r = cli(
        "migrate-db",
        "run",
        "--from",
        f"sqlite:///{dirty_zoo}",
        "--to",
        pg_url,
        "--on-error",
        "reject",
        "--reject-file",
        str(rejects),
        "--json",
    )
    assert r.exit_code == 3, r.stderr
    data = json.loads(r.stdout)
    lines = [json.loads(x) for x in rejects.read_text().splitlines()]
    by_table = {}
    for line in lines:
        by_table.setdefault(line["table"], []).append(line)
    assert [x["key"] for x in by_table["dirty"]] == [2]  # one bad row, three bad values
    assert by_table["dirty"][0]["column"] in ("n", "u")  # the first bad value found
    assert len(by_table["mixed"]) == 2  # the integer and the real
    assert data["rejected"] == 3 and "3 row(s) rejected" in r.stderr
    with pg(pg_url) as conn:  # every other row arrived; none dropped silently
        assert conn.execute("SELECT id FROM dirty ORDER BY id").fetchall() == [(1,), (3,)]
        assert conn.execute("SELECT anything FROM mixed").fetchall() == [("two",)]
    assert data["verify"]["problems"] == []
    v = cli("migrate-db", "verify", "--from", f"sqlite:///{dirty_zoo}", "--to", pg_url, "--json")
    vdata = json.loads(v.stdout)
    assert {t["table"]: t["rejected"] for t in vdata["tables"]}["dirty"] == 1


def test_a_failed_backup_leaves_nothing_behind(cli, zoo: Path, casts: Path, pg_url: str) -> None:
    """The pinned backup runs alongside the copy; when it fails, the run removes what it
    created, as a refused run does, and says why."""
    before = sha256(zoo)
    Path("blocked").write_text("a file where the backup store's folder should be")
    r = cli(
        "migrate-db",
        "run",
        "--from",
        f"sqlite:///{zoo}",
        "--to",
        pg_url,
        "--cast",
        str(casts),
        env={"EMROPS_BACKUP_STORE": str(Path("blocked") / "store")},
    )
    assert r.exit_code not in (0, 3), r.stdout
    assert "\nError: " in r.stderr and "Not a directory" in r.stderr
    assert "Traceback" not in r.stderr
    with pg(pg_url) as conn:
        assert conn.execute("SELECT to_regclass('emrops_migration')").fetchone()[0] is None
        left = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
        assert left == 0
    assert sha256(zoo) == before
    assert not any(Path(".emrops/migrate").glob("*/pre-migration.db"))
