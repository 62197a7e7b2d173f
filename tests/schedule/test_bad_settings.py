"""Scheduler settings that cannot work are refused when the command starts, naming the
setting: before, each one ran and then failed in a way only the log showed."""

from __future__ import annotations

from pathlib import Path

from tests.schedule.conftest import OFF, write_config


def test_an_unwritable_status_folder_is_refused_before_the_job(cli, tmp_path: Path) -> None:
    # the job ran, then recording its status raised "unexpected NotADirectoryError"; under
    # `schedule run` every heartbeat logged a traceback while health read the scheduler as dead
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = write_config(
        tmp_path,
        **{"": {"db_url": f"sqlite:///{tmp_path / 'app.db'}", "state_dir": str(tmp_path / "s")}},
        schedule={**OFF, "verify": "0 2 * * *", "status_dir": str(blocker / "status")},
    )
    env = {"EMROPS_CONFIG": str(config)}
    for args in (["schedule", "run-job", "verify"], ["schedule", "run"]):
        result = cli(*args, env=env)
        assert result.exit_code == 1, result.stderr
        assert f"cannot write the scheduler's status files in {blocker / 'status'}" in (
            result.stderr
        )
        assert "unexpected" not in result.stderr


def test_a_misfire_grace_past_a_year_is_refused(cli, tmp_path: Path) -> None:
    # 9999999999999999999d overflowed inside APScheduler's thread on every catch-up run
    config = write_config(
        tmp_path,
        **{"": {"db_url": f"sqlite:///{tmp_path / 'app.db'}", "state_dir": str(tmp_path / "s")}},
        schedule={**OFF, "verify": "0 2 * * *", "misfire_grace": "9999999999999999999d"},
    )
    result = cli("schedule", "run", env={"EMROPS_CONFIG": str(config)})
    assert result.exit_code == 2, result.stderr
    assert "schedule.misfire_grace" in result.stderr and "longer than a year" in result.stderr


def test_a_fraction_is_not_a_count(cli, tmp_path: Path) -> None:
    # keep_daily = 1.5 was read as 1
    config = write_config(
        tmp_path,
        **{"": {"db_url": f"sqlite:///{tmp_path / 'app.db'}"}},
        schedule={"keep_daily": 1.5},
    )
    result = cli("schedule", "show", env={"EMROPS_CONFIG": str(config)})
    assert result.exit_code == 2, result.stderr
    assert "invalid value 1.5 for schedule.keep_daily" in result.stderr
