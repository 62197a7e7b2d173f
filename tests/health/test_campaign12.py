"""`emrops health` and `emrops doctor` only read:

- on an SQLite database in rollback-journal mode (what most frameworks and the sqlite3 shell
  leave), both switched the file to WAL (a read-write connection's set-up): the database file
  changed and its -wal/-shm appeared beside it. They now open it read-only;
- a database locked by another process held `health --timeout 3s` for the engine's 10 s busy
  wait; the wait is now --timeout;
- `doctor` created the backup store's folder (./backups by default, wherever it ran) to probe
  it; a missing local store is now reported with its nearest existing parent probed;
- a verified backup or a scheduler heartbeat dated in the future (a clock ahead when it was
  written, or this one stepped back since) counted as fresh until the clocks caught up, however
  long ago backups or the scheduler had stopped: health passed. Now such a date fails its check.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from emrops import atomic
from emrops.logs import iso_utc, utc_now
from emrops.schedule.status import write_heartbeat
from tests.backup.conftest import write_resealed
from tests.sim.conftest import init_db

STATUS = Path(".emrops") / "status"
ONLY_DB = ["--skip", "sim_health", "--skip", "sim_ready", "--skip", "backup_age"]
ONLY_DB += ["--skip", "disk_space", "--skip", "scheduler"]


def _rollback_journal_db(path: Path) -> str:
    url = f"sqlite:///{path}"
    init_db(url)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    conn.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return url


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_health_and_doctor_leave_a_rollback_journal_database_as_it_is(cli, tmp_path) -> None:
    db = tmp_path / "app.db"
    url = _rollback_journal_db(db)
    before = _sha(db)
    result = cli("health", "--db", url, *ONLY_DB, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["checks"][2]["ok"] is True
    result = cli("doctor", "--json", env={"EMROPS_DB_URL": url})
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["database"]["ok"] and checks["schema"]["ok"], checks
    # before: the file's bytes changed and it was in WAL mode afterwards
    assert _sha(db) == before
    assert not Path(f"{db}-wal").exists() and not Path(f"{db}-shm").exists()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    conn.close()


def test_health_waits_for_a_locked_sqlite_database_no_longer_than_timeout(cli, tmp_path) -> None:
    db = tmp_path / "app.db"
    url = _rollback_journal_db(db)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); c.execute('CREATE TABLE held (a)')\n"
            "print('locked', flush=True); time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        result = cli("health", "--db", url, *ONLY_DB, "--timeout", "2s", "--json")
        took = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 3
    assert "database is locked" in result.stderr
    assert took < 8, took  # before: 10 s and more, whatever --timeout said


def test_doctor_creates_no_store_folder(cli, tmp_path) -> None:
    db = tmp_path / "app.db"
    url = _rollback_journal_db(db)
    store = tmp_path / "not" / "yet"
    result = cli("doctor", "--json", env={"EMROPS_DB_URL": url, "EMROPS_BACKUP_STORE": str(store)})
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["backup_store"]["ok"], checks["backup_store"]
    assert "does not exist yet" in checks["backup_store"]["detail"]
    assert not (tmp_path / "not").exists()  # before: created with the probe file's folder


@pytest.fixture
def backed_up(cli, tmp_path: Path, sqlite_url: str):
    init_db(sqlite_url)
    (tmp_path / "emrops.toml").write_text(f'db_url = "{sqlite_url}"\n')
    result = cli("backup", "run", "--verify", "--json")
    assert result.exit_code == 0, result.stderr
    write_heartbeat(tmp_path / STATUS, iso_utc(), {}, "running")

    def health(*args: str):
        return cli(
            "health", "--skip", "sim_health", "--skip", "sim_ready", "--min-free-disk", "1MB",
            "--json", *args,
        )  # fmt: skip

    return health


def test_a_backup_dated_in_the_future_does_not_count_as_fresh(cli, backed_up, tmp_path) -> None:
    assert backed_up().exit_code == 0
    [manifest] = list(tmp_path.rglob("manifest.json"))
    doc = json.loads(manifest.read_text())
    doc["created_at"] = iso_utc(utc_now() + timedelta(days=30))
    write_resealed(manifest, doc)
    assert cli("backup", "verify", doc["id"]).exit_code == 0  # verified as it now reads
    result = backed_up()
    # before: exit 0, "newest verified backup ... is 0s old"
    assert result.exit_code == 3, result.stdout
    failed = [c for c in json.loads(result.stdout)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["backup_age"]
    assert "in the future" in failed[0]["detail"] and doc["id"] in failed[0]["detail"]


def test_a_heartbeat_dated_in_the_future_does_not_count_as_fresh(backed_up, tmp_path) -> None:
    beat = tmp_path / STATUS / "heartbeat.json"
    doc = json.loads(beat.read_text())
    doc["updated_at"] = iso_utc(utc_now() + timedelta(hours=3))
    atomic.write_json(beat, doc)
    result = backed_up()
    # before: exit 0, "heartbeat of pid ... 0s ago"
    assert result.exit_code == 3
    failed = [c for c in json.loads(result.stdout)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["scheduler"]
    assert "in the future" in failed[0]["detail"]
    # a few seconds ahead (clocks a little apart) is still fresh
    doc["updated_at"] = iso_utc(utc_now() + timedelta(seconds=20))
    atomic.write_json(beat, doc)
    assert backed_up().exit_code == 0
