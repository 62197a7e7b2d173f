"""A job status or heartbeat file damaged (by a crash, a full disk or a hand edit) must not stop
scheduled backups or the commands that read it. Before: a status file holding a JSON array made
`schedule run-job backup` (what cron runs) and `schedule show` end in "unexpected
AttributeError" with no backup taken; a start time that is not a string broke `show`; a
heartbeat time that does not parse broke `health` and `show`. Now the damaged record is logged
and treated as none, and the next run of the job replaces it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.schedule.conftest import init_db, write_config

DAMAGE: dict[str, object] = {
    "a JSON array": [1],
    "a start time that is a number": {"started_at": 5},
    "a last success that is not a time": {"last_success_at": "yesterday"},
    "bytes as text": {"bytes": "12"},
    "a tick that is a list": {"tick": [1]},
}


@pytest.mark.parametrize("case", [*DAMAGE, "not UTF-8"])
def test_damaged_job_status_does_not_stop_the_job(
    cli, tmp_path: Path, sqlite_url: str, case: str
) -> None:
    init_db(sqlite_url)
    write_config(tmp_path, **{"": {"db_url": sqlite_url}, "schedule": {"status_dir": "status"}})
    assert cli("schedule", "run-job", "backup").exit_code == 0
    status = tmp_path / "status" / "backup.json"
    good = json.loads(status.read_text())
    if case == "not UTF-8":
        status.write_bytes(b"\xff{}")
    else:
        change = DAMAGE[case]
        status.write_text(json.dumps(change if isinstance(change, list) else {**good, **change}))
    for args in (("schedule", "show"), ("schedule", "show", "--json")):
        shown = cli(*args)
        assert shown.exit_code == 0, (args, shown.stderr)
        assert "unexpected" not in shown.stderr
        assert f"ignoring the damaged job status {status}" in shown.stderr
    again = cli("schedule", "run-job", "backup", "--json")
    assert again.exit_code == 0, again.stderr
    assert "unexpected" not in again.stderr
    replaced = json.loads(status.read_text())  # the next run wrote a whole record again
    assert (
        replaced["result"] == "success"
        and replaced["backup_id"] == json.loads(again.stdout)["backup_id"]
    )
    assert replaced["last_success_at"] == replaced["started_at"]


@pytest.mark.parametrize("beat", ['{"updated_at": "soon", "pid": 1}', "[]", '{"updated_at": 5}'])
def test_damaged_heartbeat_is_no_heartbeat(cli, tmp_path: Path, sqlite_url: str, beat: str) -> None:
    init_db(sqlite_url)
    write_config(tmp_path, **{"": {"db_url": sqlite_url}, "schedule": {"status_dir": "status"}})
    folder = tmp_path / "status"
    folder.mkdir()
    (folder / "heartbeat.json").write_text(beat)
    shown = cli("schedule", "show", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert "unexpected" not in shown.stderr
    health = cli(
        "health", "--skip", "sim_health", "--skip", "sim_ready", "--skip", "backup_age", "--json"
    )
    assert "unexpected" not in health.stderr
    assert health.exit_code == 3, health.stderr
    report = json.loads(health.stdout)
    (sched,) = [c for c in report["checks"] if c["name"] == "scheduler"]
    assert not sched["ok"] and "no heartbeat" in sched["detail"]
