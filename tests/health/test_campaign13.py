"""Session 13: `emrops health` and a verified backup whose data file was deleted or cut after
its verification (a cleanup script, a lifecycle rule, bit rot): it counted as a fresh, good
backup (health passed) though it could no longer be restored. It no longer counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emrops.logs import iso_utc
from emrops.schedule.status import write_heartbeat
from tests.sim.conftest import init_db

STATUS = Path(".emrops") / "status"


@pytest.fixture
def backed_up(cli, tmp_path: Path, sqlite_url: str):  # type: ignore[no-untyped-def]
    init_db(sqlite_url)
    (tmp_path / "emrops.toml").write_text(f'db_url = "{sqlite_url}"\n')
    result = cli("backup", "run", "--verify", "--json")
    assert result.exit_code == 0, result.stderr
    write_heartbeat(tmp_path / STATUS, iso_utc(), {}, "running")

    def health(*args: str):  # type: ignore[no-untyped-def]
        return cli(
            "health", "--skip", "sim_health", "--skip", "sim_ready", "--min-free-disk", "1MB",
            "--json", *args,
        )  # fmt: skip

    return health


@pytest.mark.parametrize("damage", ["deleted", "cut"])
def test_a_verified_backup_whose_data_file_went_does_not_count(
    backed_up, tmp_path: Path, damage: str
) -> None:
    assert backed_up().exit_code == 0
    [data] = list(tmp_path.rglob("database.sqlite.zst"))
    if damage == "deleted":
        data.unlink()
    else:
        data.write_bytes(data.read_bytes()[:100])
    result = backed_up()
    # before: exit 0, "newest verified backup ... is 0s old"
    assert result.exit_code == 3, result.stdout
    failed = [c for c in json.loads(result.stdout)["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["backup_age"]
    assert "no verified backup" in failed[0]["detail"]


def test_doctor_says_why_a_store_of_another_user_cannot_be_written(cli, tmp_path: Path) -> None:
    store = tmp_path / "st"
    store.mkdir(mode=0o700)
    os.chown(store, 65534, 65534)
    env = {**os.environ, "EMROPS_DB_URL": f"sqlite:///{tmp_path / 'app.db'}",
           "EMROPS_BACKUP_STORE": str(store)}  # fmt: skip
    done = subprocess.run(
        ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner",
         sys.executable, "-m", "emrops", "doctor", "--json"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False,
    )  # fmt: skip
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert not checks["backup_store"]["ok"]
    assert "Permission denied" in checks["backup_store"]["detail"]
    # before: the hint was "see the message"
    assert "run it as the store's owner" in json.dumps(checks["backup_store"])
