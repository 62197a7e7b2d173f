"""A rerun of the same migration reuses its pinned pre-migration backup; rollback unpins it;
the plan says which backup and its size (#16 item 0h)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import sha256


def _pinned(store: Path) -> list[str]:
    return sorted(p.parent.name for p in store.glob("*/pin.json"))


def _backups(store: Path) -> list[str]:
    return sorted(p.parent.name for p in store.glob("*/manifest.json"))


def test_rerun_reuses_the_backup_until_the_source_changes(cli, tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "app.db"
    with sqlite3.connect(source) as conn:
        conn.executescript(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a');"
        )
    conn.close()
    store = tmp_path / "store"
    env = {"EMROPS_BACKUP_STORE": str(store)}
    url = f"sqlite:///{source}"
    before = sha256(source)
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json", env=env)
    assert "run takes a pinned backup of the source (" in json.loads(plan.stdout)["backup"]
    first = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--json", env=env)
    assert first.exit_code == 0, first.stderr
    backup_id = json.loads(first.stdout)["backup_id"]
    assert _backups(store) == [backup_id] and _pinned(store) == [backup_id]
    # rollback unpins (the migration is abandoned; rotation may remove the backup now)
    rb = cli("migrate-db", "rollback", "--to", pg_url, "--yes", env=env)
    assert rb.exit_code == 0, rb.stderr
    assert f"pre-migration backup {backup_id} unpinned" in rb.stdout
    assert _pinned(store) == []
    # the plan names the backup a rerun reuses, with its size
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json", env=env)
    line = json.loads(plan.stdout)["backup"]
    assert line.startswith(f"pre-migration backup: run reuses {backup_id} (") and "bytes" in line
    # a rerun on the unchanged source reuses (and pins again) the same backup
    again = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--json", env=env)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["backup_id"] == backup_id
    assert _backups(store) == [backup_id] and _pinned(store) == [backup_id]
    assert sha256(source) == before
    # once the source changes, a new backup is taken
    cli("migrate-db", "rollback", "--to", pg_url, "--yes", env=env)
    with sqlite3.connect(source) as conn:
        conn.execute("INSERT INTO t (v) VALUES ('b')")
    conn.close()
    third = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--json", env=env)
    assert third.exit_code == 0, third.stderr
    new_id = json.loads(third.stdout)["backup_id"]
    assert new_id != backup_id and _pinned(store) == [new_id]
    assert len(_backups(store)) == 2
    # a run refused while creating the tables keeps the reused backup for the next one
    cli("migrate-db", "rollback", "--to", pg_url, "--yes", env=env)
    casts = tmp_path / "casts.toml"
    casts.write_text("[t.v]\ndefault = \"'x'::bigint\"\n")
    refused = cli("migrate-db", "run", "--from", url, "--to", pg_url, "--cast", str(casts), env=env)
    assert refused.exit_code == 3 and "PostgreSQL refused to create table t" in refused.stderr
    assert new_id in _backups(store)


def test_a_runs_backup_is_found_by_its_label_when_nothing_recorded_it(tmp_path: Path) -> None:
    """A run killed between publishing its pinned backup and recording it (the reuse index and
    the journal): --resume finds it by the run id in its label, and pins it if the kill also
    came before the pin."""
    from emrops.backup.catalog import list_backups
    from emrops.backup.run import RunOptions, run_backup
    from emrops.backup.stores import open_store
    from emrops.db.urls import sqlite_db_url
    from emrops.migrate import prebackup

    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    spec = str(tmp_path / "store")
    store = open_store(spec, None)
    label = prebackup.label_prefix("20261204T000000Z-abc123") + sqlite_db_url(source)
    other = run_backup(store, RunOptions(db_url=sqlite_db_url(source), label="nightly"))
    mine = run_backup(store, RunOptions(db_url=sqlite_db_url(source), label=label, pin=False))
    assert prebackup.find_of_run(spec, None, "20261204T000000Z-other") is None
    assert prebackup.find_of_run(spec, None, "20261204T000000Z-abc123") == str(mine.id)
    pinned = {e.id: e.pinned for e in list_backups(store)}
    assert pinned == {str(other.id): False, str(mine.id): True}
