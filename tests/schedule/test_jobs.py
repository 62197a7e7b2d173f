"""Job runs in process against a real SQLite (and PostgreSQL) store: status JSON, Prometheus
textfile, the store lock, failures, the restore drill and `schedule run-job` exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from emrops.backup.lock import local_lock
from emrops.config import load_settings
from emrops.db.engine import create_engine
from emrops.db.queries import create_session, list_scenarios
from emrops.schedule.jobs import JobContext, execute
from emrops.schedule.status import read_status
from tests.schedule.conftest import init_db, write_config


def _sessions(url: str, n: int) -> None:
    engine = create_engine(url)
    try:
        scenario = list_scenarios(engine)[0].id
        for i in range(n):
            create_session(engine, scenario, f"student{i}@example.org")
    finally:
        engine.dispose()


def _ctx(tmp_path: Path, db_url: str) -> JobContext:
    config = write_config(tmp_path, **{"": {"db_url": db_url}})
    return JobContext.from_settings(load_settings(config), run_id="test-run")


def _metrics(path: Path) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if "result" in sample.labels:
                out[f"{sample.name}:{sample.labels['result']}"] = sample.value
            else:
                out[sample.name] = sample.value
    return out


def test_backup_job_writes_status_and_textfile(tmp_path: Path, sqlite_url: str) -> None:
    init_db(sqlite_url)
    ctx = _ctx(tmp_path, sqlite_url)
    status = execute(ctx, "backup", None)
    assert status.result == "success", status.error
    assert (
        status.backup_id and (tmp_path / "backups" / status.backup_id / "manifest.json").is_file()
    )
    saved = json.loads((ctx.status_dir / "backup.json").read_text())
    assert saved["format"] == "emrops-schedule-status/1"
    assert saved["result"] == "success" and saved["bytes"] == status.bytes > 0
    assert saved["started_at"].endswith("Z") and saved["last_success_at"] == saved["started_at"]
    assert ctx.status_dir == tmp_path / ".emrops" / "status"
    metrics = _metrics(ctx.status_dir / "backup.prom")
    assert metrics["emrops_schedule_status"] == 2
    assert metrics["emrops_schedule_last_bytes"] == status.bytes
    assert metrics["emrops_schedule_result:success"] == 1
    # full precision: within a second of the recorded start
    from emrops.schedule.status import parse_time

    started = parse_time(saved["started_at"]).timestamp()
    assert abs(metrics["emrops_schedule_last_run_timestamp_seconds"] - started) < 0.01


def test_failure_keeps_last_success(tmp_path: Path, sqlite_url: str) -> None:
    init_db(sqlite_url)
    ctx = _ctx(tmp_path, sqlite_url)
    first = execute(ctx, "backup", None)
    ctx.db_url = f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}"
    (tmp_path / "missing").write_text("a file, not a folder")
    failed = execute(ctx, "backup", None)
    assert failed.result == "failure" and failed.exit_code != 0 and failed.error
    saved = read_status(ctx.status_dir, "backup")
    assert saved is not None and saved.result == "failure"
    assert saved.last_success_at == first.started_at
    metrics = _metrics(ctx.status_dir / "backup.prom")
    assert metrics["emrops_schedule_status"] == 0
    assert metrics["emrops_schedule_last_success_timestamp_seconds"] > 0


def test_held_store_lock_makes_the_job_busy(cli, tmp_path: Path, sqlite_url: str) -> None:
    """A one-shot command holding the store lock: the scheduled job records busy (exit 75)."""
    init_db(sqlite_url)
    write_config(tmp_path, **{"": {"db_url": sqlite_url}})
    store = tmp_path / "backups"
    store.mkdir()
    with local_lock(store, "backup run"):
        result = cli("schedule", "run-job", "backup", "--json")
        assert result.exit_code == 75, result.stderr
        status = json.loads(result.stdout)
        assert status["result"] == "busy" and status["exit_code"] == 75
        assert "is locked: backup run by pid" in status["error"]
        assert result.stderr.splitlines()[-2].startswith("Error: job backup busy: backup store")
    assert list(store.iterdir()) == [store / ".lock"]  # nothing was written
    result = cli("schedule", "run-job", "backup")
    assert result.exit_code == 0, result.stderr
    assert "backup: success" in result.stderr


def test_verify_rotate_and_failed_verification(cli, tmp_path: Path, sqlite_url: str) -> None:
    init_db(sqlite_url)
    write_config(
        tmp_path,
        **{"": {"db_url": sqlite_url}, "schedule": {"keep_last": 1, "keep_daily": 0,
                                                   "keep_weekly": 0, "keep_monthly": 0}},
    )  # fmt: skip
    result = cli("schedule", "run-job", "verify")  # nothing to verify yet
    assert result.exit_code == 2 and "Error: job verify failure: no backups " in result.stderr
    for _ in range(3):
        assert cli("schedule", "run-job", "backup").exit_code == 0
    result = cli("schedule", "run-job", "verify", "--json")
    assert result.exit_code == 0, result.stderr
    newest = json.loads(result.stdout)["backup_id"]
    result = cli("schedule", "run-job", "rotate", "--json")
    assert result.exit_code == 0, result.stderr
    # keep_last 1: the verified newest stays; the older, never-verified ones go
    assert json.loads(result.stdout)["detail"] == "kept 1, deleted 2"
    assert [p.name for p in (tmp_path / "backups").iterdir() if p.is_dir()] == [newest]
    # damage the newest backup: the verify job fails with exit 3 and names the check
    data = next((tmp_path / "backups" / newest).glob("database.*"))
    data.write_bytes(b"garbage")
    result = cli("schedule", "run-job", "verify", "--json")
    assert result.exit_code == 3
    status = json.loads(result.stdout)
    assert status["result"] == "failure" and "checksum" in status["error"]
    assert "Error: job verify failure: verification failed for " + newest in result.stderr


def test_drill_sqlite(tmp_path: Path, sqlite_url: str) -> None:
    init_db(sqlite_url)
    _sessions(sqlite_url, 3)
    ctx = _ctx(tmp_path, sqlite_url)
    assert execute(ctx, "backup", None).result == "success"
    status = execute(ctx, "drill", None)
    assert status.result == "success", status.error
    assert status.extra["sessions"] == 3
    assert 0 < status.extra["recovery_seconds"] < 30
    assert "ready, revision" in status.detail
    assert "emrops_schedule_drill_recovery_seconds" in (ctx.status_dir / "drill.prom").read_text()
    # the drill verified the backup (recorded) and left the source untouched
    assert (tmp_path / "backups" / status.backup_id / "verification.json").is_file()


def test_drill_postgres(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    from tests.conftest import PG_ADMIN_DSN

    def drill_dbs() -> set[str]:
        with psycopg.connect(PG_ADMIN_DSN) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'emrops_drill_%'"
            ).fetchall()
        return {r[0] for r in rows}

    init_db(pg_url)
    _sessions(pg_url, 2)
    ctx = _ctx(tmp_path, pg_url)
    assert execute(ctx, "backup", None).result == "success"
    before = drill_dbs()
    status = execute(ctx, "drill", None)
    assert status.result == "success", status.error
    assert status.extra["sessions"] == 2
    assert drill_dbs() <= before  # the scratch database was dropped


def test_drill_without_backups_fails(tmp_path: Path, sqlite_url: str) -> None:
    init_db(sqlite_url)
    status = execute(_ctx(tmp_path, sqlite_url), "drill", None)
    assert status.result == "failure" and status.error.startswith("no backups of sqlite:///")


def test_unknown_job(cli) -> None:
    result = cli("schedule", "run-job", "vacuum")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown job 'vacuum'")
