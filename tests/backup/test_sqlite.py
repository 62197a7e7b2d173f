"""backup run / list / verify / pin / rotate / restore on a real SQLite file, through the CLI."""

from __future__ import annotations

import json
import sqlite3
import stat
from pathlib import Path

from emrops.backup.manifest import ID_PATTERN
from tests.backup.conftest import json_of, listed, run_backup


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: conn.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        conn.close()


def test_run_writes_a_complete_private_backup(cli, seeded_sqlite: str, store: Path) -> None:
    manifest = run_backup(cli, seeded_sqlite, store, "--label", "first")
    assert ID_PATTERN.match(manifest["id"])
    assert manifest["engine"] == "sqlite"
    assert manifest["schema_revision"] == "0001_initial"
    assert manifest["row_counts"]["messages"] == 200 and manifest["row_counts"]["sessions"] == 20
    assert manifest["label"] == "first" and manifest["tool_version"]
    [data] = manifest["files"]
    assert data["name"] == "database.sqlite.zst" and data["compression"] == "zstd"
    assert data["encryption"] is None and len(data["sha256"]) == 64
    folder = store / manifest["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["database.sqlite.zst", "manifest.json"]
    for path in [*folder.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert json.loads((folder / "manifest.json").read_text())["files"][0]["size"] == data["size"]


def test_ids_sort_by_time_and_list_shows_them(cli, seeded_sqlite: str, store: Path) -> None:
    ids = [run_backup(cli, seeded_sqlite, store)["id"] for _ in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    entries = listed(cli, store)
    assert [e["id"] for e in entries] == ids
    assert entries[0]["verified"] == "never" and entries[0]["engine"] == "sqlite"
    human = cli("backup", "list", "--store", str(store))
    assert human.exit_code == 0 and ids[0] in human.stdout and "never" in human.stdout


def test_verify_records_the_result(cli, seeded_sqlite: str, store: Path) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    [result] = json_of(cli("backup", "verify", backup_id, "--store", str(store), "--json"))
    assert result["ok"] is True
    names = [c["name"] for c in result["checks"]]
    assert names == [
        "manifest seal",
        "checksum database.sqlite.zst",
        "integrity_check",
        "foreign_key_check",
        "row counts",
    ]
    recorded = json.loads((store / backup_id / "verification.json").read_text())
    assert recorded["ok"] is True and recorded["verified_at"]
    assert listed(cli, store)[0]["verified"] == "ok"
    again = cli("backup", "verify", "--latest", "--store", str(store))
    assert again.exit_code == 0 and "ok" in again.stderr
    history = json.loads((store / backup_id / "verification.json").read_text())["history"]
    assert len(history) == 1 and history[0]["ok"] is True


def test_verify_needs_a_target(cli, store: Path) -> None:
    result = cli("backup", "verify", "--store", str(store))
    assert result.exit_code == 2
    assert "Error: give one of: a backup ID, --latest or --all" in result.stderr
    empty = cli("backup", "verify", "--latest", "--store", str(store))
    assert empty.exit_code == 2 and "no backups in" in empty.stderr
    bad = cli("backup", "verify", "../etc", "--store", str(store))
    assert bad.exit_code == 2 and "invalid backup id" in bad.stderr


def test_pin_rotate_dry_run_and_delete(cli, seeded_sqlite: str, store: Path) -> None:
    ids = [run_backup(cli, seeded_sqlite, store)["id"] for _ in range(4)]
    for backup_id in ids[:3]:
        assert cli("backup", "verify", backup_id, "--store", str(store)).exit_code == 0
    pinned = json_of(cli("backup", "pin", ids[0], "--store", str(store), "--json"))
    assert pinned["pinned"] is True
    dry = json_of(
        cli("backup", "rotate", "--keep-last", "1", "--dry-run", "--store", str(store), "--json")
    )
    actions = {d["id"]: (d["action"], d["reasons"]) for d in dry["decisions"]}
    assert actions[ids[0]] == ("keep", ["pinned"])
    assert actions[ids[1]] == ("delete", ["matches no keep rule (verified)"])
    assert actions[ids[2]] == ("keep", ["newest verified", "last"])
    assert actions[ids[3]][0] == "keep" and "not verified yet" in actions[ids[3]][1][0]
    assert (
        dry["deleted"] == [] and [e["id"] for e in listed(cli, store)] == ids
    )  # dry run: nothing gone
    done = json_of(cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json"))
    assert done["deleted"] == [ids[1]]
    assert [e["id"] for e in listed(cli, store)] == [ids[0], ids[2], ids[3]]
    assert not (store / ids[1]).exists()
    # unpinned, the old one goes on the next rotation
    assert cli("backup", "unpin", ids[0], "--store", str(store)).exit_code == 0
    done = json_of(cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json"))
    assert done["deleted"] == [ids[0]]
    human = cli("backup", "rotate", "--keep-daily", "7", "--dry-run", "--store", str(store))
    assert human.exit_code == 0 and "dry run: nothing deleted" in human.stderr  # title: stderr
    assert human.stdout.startswith("id\taction\treasons\n")  # not a terminal: TSV


def test_rotate_needs_a_rule(cli, store: Path) -> None:
    result = cli("backup", "rotate", "--store", str(store))
    assert result.exit_code == 2 and "rotate needs at least one --keep-* rule" in result.stderr
    tz = cli("backup", "rotate", "--keep-last", "1", "--tz", "Nowhere/Land", "--store", str(store))
    assert tz.exit_code == 2 and "unknown time zone 'Nowhere/Land'" in tz.stderr


def test_restore_plans_refuses_then_swaps_atomically(
    cli, seeded_sqlite: str, store: Path, tmp_path: Path
) -> None:
    db = Path(seeded_sqlite.removeprefix("sqlite:///"))
    before = counts(db)
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM messages WHERE id % 2 = 0")
    conn.commit()
    conn.close()
    assert counts(db)["messages"] == 100

    dry = json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(db),
            "--dry-run",
            "--json",
            "--store",
            str(store),
        )
    )
    assert dry["dry_run"] is True and len(dry["plan"]["refusals"]) == 1
    assert "already holds data" in dry["plan"]["refusals"][0]
    assert counts(db)["messages"] == 100  # dry run changed nothing

    refused = cli(
        "backup", "restore", backup_id, "--target", str(db), "--yes", "--store", str(store)
    )
    assert refused.exit_code == 1 and "Error: restore refused: target" in refused.stderr
    assert "Try: check the target; --force overwrites it" in refused.stderr

    no_tty = cli(
        "backup", "restore", backup_id, "--target", str(db), "--force", "--store", str(store)
    )
    assert no_tty.exit_code == 2 and "confirmation needed" in no_tty.stderr

    done = json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(db),
            "--force",
            "--yes",
            "--json",
            "--store",
            str(store),
        )
    )
    assert done["verification"]["ok"] is True
    assert counts(db) == before
    safety = done["safety_backup_id"]
    entries = {e["id"]: e for e in listed(cli, store)}
    assert entries[safety]["label"] == f"safety copy before restore of {backup_id}"
    assert entries[safety]["rows"] == sum(before.values()) - 100
    assert not list(db.parent.glob(f".{db.name}.restore-*"))
    conn = sqlite3.connect(db)
    value = conn.execute("SELECT value FROM emrops_control WHERE key = 'maintenance'").fetchone()
    conn.close()
    assert value is None or json.loads(value[0])["on"] is False  # as before the restore


def test_restore_into_a_new_file_and_revision_guard(
    cli, seeded_sqlite: str, store: Path, tmp_path: Path
) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    fresh = tmp_path / "restored" / "new.db"
    done = json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(fresh),
            "--yes",
            "--json",
            "--store",
            str(store),
        )
    )
    assert done["safety_backup_id"] is None
    assert counts(fresh)["messages"] == 200
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    conn = sqlite3.connect(fresh)
    conn.execute("UPDATE alembic_version SET version_num = '0002_future'")
    conn.commit()
    conn.close()
    refused = cli(
        "backup", "restore", backup_id, "--target", str(fresh), "--yes", "--store", str(store)
    )
    assert refused.exit_code == 1
    assert "schema revision differs: backup 0001_initial, target 0002_future" in refused.stderr


def test_restore_refuses_another_engine(cli, seeded_sqlite: str, store: Path) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    result = cli(
        "backup",
        "restore",
        backup_id,
        "--target",
        "postgresql+psycopg://postgres@127.0.0.1/x",
        "--yes",
        "--force",
        "--store",
        str(store),
    )
    assert result.exit_code == 2
    assert "is a sqlite backup and the target is postgresql" in result.stderr


def test_store_from_config_file(cli, seeded_sqlite: str, tmp_path: Path) -> None:
    (tmp_path / "emrops.toml").write_text(
        f'db_url = "{seeded_sqlite}"\n[backup]\nstore = "vault"\n'
    )
    result = cli("backup", "run", "--json")
    assert result.exit_code == 0, result.stderr
    backup_id = json.loads(result.stdout)["manifest"]["id"]
    assert (tmp_path / "vault" / backup_id / "manifest.json").is_file()


def test_run_with_verify_and_pin(cli, seeded_sqlite: str, store: Path) -> None:
    result = json_of(
        cli(
            "backup",
            "run",
            "--db",
            seeded_sqlite,
            "--store",
            str(store),
            "--verify",
            "--pin",
            "--json",
        )
    )
    assert result["verification"]["ok"] is True
    [entry] = listed(cli, store)
    assert entry["pinned"] is True and entry["verified"] == "ok"
    human = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store))
    assert human.exit_code == 0 and ID_PATTERN.match(human.stdout.strip())


def test_restore_moves_an_unreadable_target_aside(
    cli, seeded_sqlite: str, store: Path, tmp_path: Path
) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    junk = tmp_path / "junk.db"
    junk.write_text("not a database at all\n" * 20)
    refused = cli(
        "backup", "restore", backup_id, "--target", str(junk), "--yes", "--store", str(store)
    )
    assert refused.exit_code == 1 and "not a readable SQLite database" in refused.stderr
    done = json_of(
        cli(
            "backup",
            "restore",
            backup_id,
            "--target",
            str(junk),
            "--yes",
            "--force",
            "--json",
            "--store",
            str(store),
        )
    )
    aside = Path(done["moved_aside"])
    assert aside.name == f"junk.db.before-restore-{backup_id}"
    assert aside.read_text().startswith("not a database")
    assert counts(junk)["messages"] == 200
