"""Session 13: `schedule run-job` from cron beside a running `schedule run` (one tick, one
run), and other hostile schedule conditions."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.schedule.conftest import OFF, init_db, wait_for, write_config


def _run_job(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    return subprocess.run(
        [sys.executable, "-m", "emrops", "--config", str(config), "schedule", "run-job", *args],
        capture_output=True, text=True, env=env, cwd=config.parent, timeout=60,
    )  # fmt: skip


def _backups(store: Path) -> list[str]:
    return sorted(p.name for p in store.iterdir() if p.is_dir()) if store.is_dir() else []


def test_run_job_after_the_scheduler_ran_the_tick_skips_it(
    tmp_path: Path, sqlite_url: str, start_scheduler
) -> None:
    # cron's run-job a moment after the scheduler's run of the same tick took a second
    # backup for that tick (the store lock only stops runs that overlap)
    init_db(sqlite_url)
    config = write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url},
           "schedule": {**OFF, "backup": "0 0 1 1 *", "heartbeat_interval": "0.5s"}},
    )  # fmt: skip
    scheduler = start_scheduler(config)  # catch-up runs the missed tick at once
    assert wait_for(lambda: (scheduler.status("backup") or {}).get("result")
                    == "success", 30, 0.1), scheduler.log()  # fmt: skip
    first = scheduler.status("backup")
    assert first is not None and first["last_success_by"] == "scheduler"
    assert len(_backups(tmp_path / "backups")) == 1
    again = _run_job(config, "backup", "--json")
    assert again.returncode == 0, again.stderr
    status = json.loads(again.stdout)
    assert status["result"] == "skipped"
    assert status["detail"] == (
        f"tick {first['tick']} already run by scheduler (at {first['started_at']})"
    )
    assert len(_backups(tmp_path / "backups")) == 1  # no second backup for the tick
    # a manual rerun (--no-claim) still runs, and a run-job after a run-job too
    assert _run_job(config, "backup", "--no-claim").returncode == 0
    assert len(_backups(tmp_path / "backups")) == 2
    scheduler.stop()


def test_a_run_of_the_job_in_another_process_makes_run_job_busy(
    tmp_path: Path, sqlite_url: str
) -> None:
    # verify and drill do not hold the store lock for writing: two of them overlapped freely
    init_db(sqlite_url)
    config = write_config(tmp_path, **{"": {"db_url": sqlite_url}})
    status_dir = tmp_path / ".emrops" / "status"
    status_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from emrops.schedule.joblock import job_running
            with job_running(Path({str(status_dir)!r}), "drill", "scheduler"):
                print("held", flush=True)
                time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        result = _run_job(config, "drill", "--json")
        assert result.returncode == 75, result.stderr
        status = json.loads(result.stdout)
        assert status["result"] == "busy"
        assert status["error"].startswith(
            f"job drill is already running (scheduler drill by pid {holder.pid} on "
        )
        assert "Traceback" not in result.stderr
    finally:
        holder.kill()
        holder.wait(5)
    # the kernel dropped the lock with its holder: the next run goes ahead
    result = _run_job(config, "backup")
    assert result.returncode == 0, result.stderr


def test_a_full_status_folder_is_logged_once_and_its_recovery_too(
    tmp_path: Path, sqlite_url: str, start_scheduler
) -> None:
    # "heartbeat crashed: ... No space left on device" at every beat, for as long as it lasted
    from tests.conftest import tmpfs

    init_db(sqlite_url)
    with tmpfs("size=64k") as mount:
        config = write_config(
            tmp_path,
            **{"": {"db_url": sqlite_url},
               "schedule": {**OFF, "backup": "0 2 * * *", "heartbeat_interval": "0.2s",
                            "status_dir": str(mount)}},
        )  # fmt: skip
        scheduler = start_scheduler(config, "--no-catch-up")
        try:
            scheduler.status_dir = mount
            assert wait_for(lambda: (mount / "heartbeat.json").exists(), 15, 0.1), scheduler.log()
            filler = mount / "filler"
            with filler.open("wb") as handle, contextlib.suppress(OSError):
                handle.write(b"x" * 128 * 1024)  # the tmpfs is full now

            def said(text: str) -> list[str]:
                return [e["msg"] for e in scheduler.events() if text in e.get("msg", "")]

            assert wait_for(lambda: said("cannot write the heartbeat"), 15, 0.1), scheduler.log()
            time.sleep(1.5)  # 7 more beats, all failing
            assert len(said("cannot write the heartbeat")) == 1
            assert not said("crashed")
            filler.unlink()
            assert wait_for(lambda: said("heartbeat written again after"), 15, 0.1)
            assert scheduler.stop() == 0
        finally:  # nothing may hold the tmpfs when it is unmounted
            if scheduler.proc.poll() is None:
                scheduler.proc.kill()
                scheduler.proc.wait(5)
        assert json.loads((mount / "heartbeat.json").read_text())["state"] == "stopped"


def test_schedule_show_gives_the_year_of_a_run_in_another_year(cli, tmp_path: Path) -> None:
    # `0 0 29 2 *` showed "next run 02-29 00:00:00": two years away, read as next February
    import calendar
    from datetime import UTC, datetime

    write_config(tmp_path, **{"schedule": {**OFF, "backup": "0 0 29 2 *"}})
    result = cli("schedule", "show")
    assert result.exit_code == 0, result.stderr
    now = datetime.now(UTC)
    year = next(
        y for y in range(now.year, now.year + 9)
        if calendar.isleap(y) and datetime(y, 2, 29, tzinfo=UTC) > now
    )  # fmt: skip
    row = next(line for line in result.stdout.splitlines() if line.startswith("backup\t"))
    expected = "02-29 00:00:00" if year == now.year else f"{year}-02-29 00:00:00"
    assert row.split("\t")[2] == expected
