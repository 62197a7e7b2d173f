"""Tick claims on PostgreSQL: two schedulers on one database back up once per tick."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from emrops.logs import iso_utc
from emrops.schedule.claim import claim_tick, claimed_ticks, needs_claim
from tests.schedule.conftest import OFF, init_db, wait_for, write_config


def test_claim_is_once_per_job_and_tick(pg_url: str, sqlite_url: str) -> None:
    assert needs_claim(pg_url) and not needs_claim(sqlite_url)
    assert claimed_ticks(pg_url, "backup") == []  # no table yet: nothing claimed
    tick = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
    first = claim_tick(pg_url, "backup", tick, "host-a:1")
    second = claim_tick(pg_url, "backup", tick, "host-b:2")
    other_job = claim_tick(pg_url, "verify", tick, "host-b:2")
    assert first.claimed and not second.claimed and other_job.claimed
    assert second.holder == "host-a:1"
    assert claimed_ticks(pg_url, "backup") == [(tick, "host-a:1")]


def test_two_schedulers_one_backup_per_tick(tmp_path: Path, pg_url: str, start_scheduler) -> None:
    init_db(pg_url)
    schedulers = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        config = write_config(
            folder,
            **{"": {"db_url": pg_url},
               "schedule": {**OFF, "backup": "*/2 * * * * *", "heartbeat_interval": "0.5s"}},
        )  # fmt: skip
        schedulers.append(start_scheduler(config, name=name))

    def successes() -> list[dict]:
        return [
            e for s in schedulers for e in s.events()
            if e.get("job") == "backup" and e.get("result") == "success"
        ]  # fmt: skip

    assert wait_for(lambda: len(successes()) >= 4, 30, 0.2), schedulers[0].log()
    for scheduler in schedulers:
        assert scheduler.stop() == 0
    done = successes()
    skipped = [
        e for s in schedulers for e in s.events()
        if e.get("job") == "backup" and e.get("result") == "skipped"
    ]  # fmt: skip
    ticks = [e["tick"] for e in done]
    assert len(ticks) == len(set(ticks)), ticks  # never two backups for one tick
    claimed = [iso_utc(t) for t, _ in claimed_ticks(pg_url, "backup")]
    assert set(ticks) <= set(claimed)
    # a claimed tick without a backup must have failed visibly in its claimant (none expected)
    unfinished = set(claimed) - set(ticks)
    assert unfinished == set(), [s.log() for s in schedulers]
    assert skipped and {e["tick"] for e in skipped} <= set(ticks)
    stored = [
        p for name in ("a", "b") for p in (tmp_path / name / "backups").glob("*/manifest.json")
    ]
    assert len(stored) == len(done)
    for name in ("a", "b"):
        status = json.loads((tmp_path / name / ".emrops" / "status" / "backup.json").read_text())
        assert status["result"] in ("success", "skipped")
