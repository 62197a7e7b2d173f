"""Session 13: `emrops health` and a verified backup whose data file was deleted or cut after
its verification (a cleanup script, a lifecycle rule, bit rot): it counted as a fresh, good
backup (health passed) though it could no longer be restored. It no longer counts."""

from __future__ import annotations

import json
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
