"""One store, many sources: each manifest records which database it is of, and --latest,
restore --latest, the drill and health's backup-age use the configured database's backups
unless --source says otherwise."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from emrops.schedule.jobs import JobContext, execute
from tests.backup.conftest import json_of, listed, run_backup, seed


@pytest.fixture
def two(tmp_path: Path) -> tuple[str, str]:
    a = seed(f"sqlite:///{tmp_path / 'a.db'}", sessions=5)
    b = seed(f"sqlite:///{tmp_path / 'b.db'}", sessions=8)
    return a, b


def _sessions(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
    finally:
        conn.close()


def test_manifest_records_the_source_and_list_filters(
    cli, two: tuple[str, str], store: Path, tmp_path: Path
) -> None:
    a, b = two
    first_a = run_backup(cli, a, store)
    only_b = run_backup(cli, b, store)
    assert first_a["source_id"] == {
        "kind": "sqlite",
        "path": str((tmp_path / "a.db").resolve()),
        "header": {"page_size": 4096, "text_encoding": 1, "application_id": 0},
    }
    assert only_b["source_id"]["path"] == str((tmp_path / "b.db").resolve())
    assert [e["id"] for e in listed(cli, store)] == [first_a["id"], only_b["id"]]
    of_a = json_of(cli("backup", "list", "--store", str(store), "--source", a, "--json"))
    assert [e["id"] for e in of_a["backups"]] == [first_a["id"]]
    # a plain path names the same source (symlinks resolved)
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "b.db")
    of_b = json_of(cli("backup", "list", "--store", str(store), "--source", str(link), "--json"))
    assert [e["id"] for e in of_b["backups"]] == [only_b["id"]]
    table = cli("backup", "list", "--store", str(store))
    assert "a.db" in table.stdout and "b.db" in table.stdout


def test_latest_uses_the_configured_database(
    cli, two: tuple[str, str], store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    of_a = run_backup(cli, a, store)["id"]
    of_b = run_backup(cli, b, store)["id"]  # newer, of another database
    monkeypatch.setenv("EMROPS_DB_URL", a)
    [mine] = json_of(cli("backup", "verify", "--latest", "--store", str(store), "--json"))
    assert mine["backup_id"] == of_a
    [newest] = json_of(
        cli("backup", "verify", "--latest", "--source", "all", "--store", str(store), "--json")
    )
    assert newest["backup_id"] == of_b
    # restore --latest: a's newest, into a new file
    target = tmp_path / "restored.db"
    done = json_of(
        cli(
            "backup",
            "restore",
            "--latest",
            "--target",
            str(target),
            "--yes",
            "--json",
            "--store",
            str(store),
        )
    )
    assert done["plan"]["backup_id"] == of_a and _sessions(target) == 5
    # the drill and health's backup age count only a's backups
    ctx = JobContext.from_settings(_settings(tmp_path))
    drill = execute(ctx, "drill", None)
    assert drill.result == "success" and drill.backup_id == of_a, drill.error
    (store / of_a / "verification.json").unlink()
    health = cli("health", "--store", str(store), *SKIP, "--json")
    assert health.exit_code == 3 and "no verified backup of sqlite:///" in health.stderr
    json_of(cli("backup", "verify", of_b, "--store", str(store), "--json"))
    still = cli("health", "--store", str(store), *SKIP, "--json")
    assert still.exit_code == 3  # b's verified backup is not a's
    other = cli(
        "health",
        "--store",
        str(store),
        "--source",
        "all",
        *SKIP,
        "--json",
    )
    assert other.exit_code == 0, other.stderr


SKIP = ("--skip", "sim_health", "--skip", "sim_ready", "--skip", "scheduler")


def _settings(tmp_path: Path):  # type: ignore[no-untyped-def]
    from emrops.config import load_settings

    return load_settings(flags={"backup.store": str(tmp_path / "backups")})


def test_restoring_another_databases_backup_needs_force(
    cli, two: tuple[str, str], store: Path, tmp_path: Path
) -> None:
    a, b = two
    of_b = run_backup(cli, b, store)["id"]
    target = tmp_path / "a.db"
    refused = cli(
        "backup", "restore", of_b, "--target", str(target), "--yes", "--store", str(store)
    )
    assert refused.exit_code == 1
    assert "the target is another database than the one backup" in refused.stderr
    assert _sessions(target) == 5
    # no such refusal for a new file, nor for the database the backup was taken of
    plan = json_of(
        cli(
            "backup",
            "restore",
            of_b,
            "--target",
            str(tmp_path / "new.db"),
            "--dry-run",
            "--json",
            "--store",
            str(store),
        )
    )
    assert plan["plan"]["refusals"] == []
    same = json_of(
        cli(
            "backup",
            "restore",
            of_b,
            "--target",
            str(tmp_path / "b.db"),
            "--dry-run",
            "--json",
            "--store",
            str(store),
        )
    )
    assert not any("another database" in r for r in same["plan"]["refusals"])
    forced = cli(
        "backup",
        "restore",
        of_b,
        "--target",
        str(target),
        "--yes",
        "--force",
        "--store",
        str(store),
    )
    assert forced.exit_code == 0, forced.stderr
    assert _sessions(target) == 8


def test_old_manifests_match_by_source_url(
    cli, two: tuple[str, str], store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = two
    old_a = run_backup(cli, a, store)["id"]
    run_backup(cli, b, store)
    path = store / old_a / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["source_id"], doc["seal"]  # as written before source ids
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("EMROPS_DB_URL", a)
    [mine] = json_of(cli("backup", "verify", "--latest", "--store", str(store), "--json"))
    assert mine["backup_id"] == old_a


def test_postgres_source_identity(cli, seeded_pg: str, store: Path) -> None:
    manifest = run_backup(cli, seeded_pg, store)
    database = seeded_pg.rsplit("/", 1)[1]
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres") as conn:
        sysid = conn.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
    assert manifest["source_id"] == {
        "kind": "postgresql",
        "system_identifier": sysid[0],
        "database": database,
    }
    of_it = json_of(cli("backup", "list", "--store", str(store), "--source", seeded_pg, "--json"))
    assert [e["id"] for e in of_it["backups"]] == [manifest["id"]]
    other = seeded_pg.rsplit("/", 1)[0] + "/postgres"
    none = json_of(cli("backup", "list", "--store", str(store), "--source", other, "--json"))
    assert none["backups"] == []


@pytest.mark.parametrize("name", ["plain.db", "with space.db", "q?mark.db", "per%cent.db", "ü.db"])
def test_identity_is_the_same_through_a_path_a_plain_url_and_the_full_parser(
    tmp_path: Path, name: str
) -> None:
    """identity_of reads a path or a plain SQLite URL without SQLAlchemy; escaped URLs go
    through the full parser. All three agree, and a symlink names its target."""
    from emrops.backup.sources import identity_of
    from emrops.db.urls import sqlite_db_url

    path = tmp_path / name
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    link = tmp_path / "link.db"
    link.symlink_to(path)
    expected = identity_of(sqlite_db_url(path))  # escaped (or plain): either reader
    assert expected["path"] == str(path.resolve()) and expected["header"]["page_size"] > 0
    assert identity_of(str(path)) == expected
    assert identity_of(str(link)) == expected
    if "?" not in name and "%" not in name:
        assert identity_of(f"sqlite:///{path}") == expected


def test_a_sqlite_backup_imports_neither_sqlalchemy_nor_jsonschema(tmp_path: Path) -> None:
    """About 0.25 s of imports that migrate-db's pinned backup paid on the critical path."""
    import subprocess
    import sys

    db = tmp_path / "src.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from emrops.backup.run import RunOptions, run_backup\n"
        "from emrops.backup.stores import open_store\n"
        "from emrops.db.urls import sqlite_db_url\n"
        f"store = open_store({str(tmp_path / 'store')!r}, None)\n"
        f"m = run_backup(store, RunOptions(db_url=sqlite_db_url(Path({str(db)!r})), pin=True))\n"
        "print(m.source_id['kind'], 'sqlalchemy' in sys.modules, 'jsonschema' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["sqlite", "False", "False"], out.stderr
