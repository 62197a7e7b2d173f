"""`restore --latest` with a backup dated in the future: a host whose clock was ahead when it
took a backup (or this host's clock stepped back since) makes that backup the "newest" by
date for as long as the clocks disagree, however old it really is. `restore --latest` restored
it: stale data, exit 0, while the user asked for the last backup. It now refuses (exit 2)
naming it; a backup named by its id still restores."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import timedelta
from pathlib import Path

from emrops.logs import utc_now
from tests.backup.conftest import json_of, run_backup, write_resealed
from tests.sim.conftest import init_db


def _rows(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
    finally:
        conn.close()


def test_restore_latest_refuses_a_backup_dated_in_the_future(cli, tmp_path) -> None:
    db = tmp_path / "app.db"
    url = f"sqlite:///{db}"
    init_db(url)
    store = tmp_path / "store"
    old = run_backup(cli, url, store)
    # the "old" backup, as a host with its clock 30 days ahead would have named and dated it
    moment = utc_now() + timedelta(days=30)
    ahead_id = moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z-abcdef"
    shutil.copytree(store / old["id"], store / ahead_id)
    doc = json.loads((store / ahead_id / "manifest.json").read_text())
    doc["id"] = ahead_id
    doc["created_at"] = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    write_resealed(store / ahead_id / "manifest.json", doc)
    # a newer backup, taken after rows were added
    added = cli("sim", "seed", "--db", url, "--sessions", "3", "--append")
    assert added.exit_code == 0, added.stderr
    newest = run_backup(cli, url, store)
    target = tmp_path / "restored.db"
    result = cli(
        "backup", "restore", "--latest", "--source", "all", "--target", f"sqlite:///{target}",
        "--store", str(store), "--yes",
    )  # fmt: skip
    # before: exit 0, restoring the 30-days-ahead copy of the first backup (no 'later' rows)
    assert result.exit_code == 2, result.stderr
    assert f"the newest backup by date, {ahead_id}, is dated" in result.stderr
    assert "in the future" in result.stderr and "Try: look at `emrops backup list`" in result.stderr
    assert not target.exists()
    done = json_of(
        cli(
            "backup", "restore", newest["id"], "--target", f"sqlite:///{target}",
            "--store", str(store), "--yes", "--json",
        )
    )  # fmt: skip
    assert done["plan"]["backup_id"] == newest["id"], done.keys()
    assert _rows(target) == _rows(db)
