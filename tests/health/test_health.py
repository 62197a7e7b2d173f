"""`emrops health`: every check passing, then each failing in turn (exit 3, named), the
alert webhook, stale and stopped scheduler heartbeats."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from emrops import atomic
from emrops.health.checks import CHECKS
from emrops.logs import iso_utc, utc_now
from emrops.schedule.status import write_heartbeat
from tests.conftest import drop_pg_database, free_port
from tests.health.conftest import Webhook
from tests.sim.conftest import init_db

STATUS = Path(".emrops") / "status"


@pytest.fixture
def healthy(cli, tmp_path: Path, sqlite_url: str, start_server):
    """A healthy deployment: sim server, a verified backup, a fresh scheduler heartbeat."""
    init_db(sqlite_url)
    (tmp_path / "emrops.toml").write_text(f'db_url = "{sqlite_url}"\n')
    server = start_server("--db", sqlite_url)
    result = cli("backup", "run", "--verify", "--json")
    assert result.exit_code == 0, result.stderr
    write_heartbeat(tmp_path / STATUS, iso_utc(), {}, "running")

    def health(*args: str, env: dict[str, str] | None = None):
        return cli("health", "--url", server.url, "--min-free-disk", "1MB", *args, env=env)

    return health


def _failed(result) -> set[str]:
    return {c["name"] for c in json.loads(result.stdout)["checks"] if not c["ok"]}


def test_all_checks_pass(healthy) -> None:
    result = healthy("--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["format"] == "emrops-health/1"
    assert [c["name"] for c in report["checks"]] == list(CHECKS)
    details = {c["name"]: c["detail"] for c in report["checks"]}
    assert details["sim_ready"].startswith("GET /ready: 200, database ok, revision ")
    assert details["backup_age"].startswith("newest verified backup ")
    assert report["checked_at"].endswith("Z") and report["alert"] is None
    table = healthy()
    assert table.exit_code == 0
    assert "sim_health" in table.stdout and "FAIL" not in table.stdout


def test_each_check_failing_in_turn(healthy, tmp_path: Path) -> None:
    # sim server: nothing listening there
    dead = f"http://127.0.0.1:{free_port()}"
    result = healthy("--json", "--url", dead)
    assert result.exit_code == 3
    assert _failed(result) == {"sim_health", "sim_ready"}
    assert "Error: health check failed: sim_health (" in result.stderr
    assert f"{dead}/health unreachable" in result.stderr

    # database
    missing = "postgresql+psycopg://postgres@127.0.0.1:5432/emrops_no_such_database"
    result = healthy("--json", "--db", missing, "--source", "all")
    assert result.exit_code == 3 and _failed(result) == {"database"}
    # without --source, backup_age counts only that database's backups: it has none
    result = healthy("--json", "--db", missing)
    assert result.exit_code == 3 and _failed(result) == {"database", "backup_age"}
    assert "no verified backup of postgresql+psycopg://" in result.stderr

    # disk space
    result = healthy("--json", "--min-free-disk", "1000TB")
    assert result.exit_code == 3 and _failed(result) == {"disk_space"}
    assert "(minimum 1000000.00 GB)" in result.stderr

    # backup age: the newest verified backup is older than the limit
    time.sleep(1.1)
    result = healthy("--json", "--max-backup-age", "1s")
    assert result.exit_code == 3 and _failed(result) == {"backup_age"}
    assert "old (limit 1s)" in result.stderr

    # scheduler: stale heartbeat, then stopped, then none
    beat = tmp_path / STATUS / "heartbeat.json"
    stale = json.loads(beat.read_text())
    stale["updated_at"] = iso_utc(utc_now() - timedelta(minutes=10))
    atomic.write_json(beat, stale)
    result = healthy("--json")
    assert result.exit_code == 3 and _failed(result) == {"scheduler"}
    assert "ago (limit 5m)" in result.stderr and "heartbeat of pid" in result.stderr
    assert healthy("--json", "--max-heartbeat-age", "1h").exit_code == 0
    write_heartbeat(tmp_path / STATUS, iso_utc(), {}, "stopped")
    result = healthy("--json")
    assert result.exit_code == 3 and "stopped at" in result.stderr
    beat.unlink()
    result = healthy("--json")
    assert result.exit_code == 3 and _failed(result) == {"scheduler"}
    assert "no heartbeat in " in result.stderr
    # cron/systemd-timer deployments have no scheduler process: leave the check out
    result = healthy("--json", "--skip", "scheduler")
    assert result.exit_code == 0
    skipped = [c for c in json.loads(result.stdout)["checks"] if c["skipped"]]
    assert [c["name"] for c in skipped] == ["scheduler"]

    # no verified backup at all
    for folder in (tmp_path / "backups").iterdir():
        if folder.is_dir():
            (folder / "verification.json").unlink()
    result = healthy("--json", "--skip", "scheduler")
    assert result.exit_code == 3 and _failed(result) == {"backup_age"}
    assert "no verified backup of sqlite:///" in result.stderr


def test_unknown_check_is_a_usage_error(cli) -> None:
    result = cli("health", "--skip", "coffee")
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: unknown check coffee")


def test_ready_fails_when_the_database_is_gone(cli, tmp_path: Path, pg_url: str, start_server):
    """/health answers (the process lives) but /ready does not: the database was dropped."""
    init_db(pg_url)
    server = start_server("--db", pg_url)
    drop_pg_database(pg_url.rsplit("/", 1)[1])
    result = cli("health", "--url", server.url, "--db", pg_url, "--json",
                 "--skip", "backup_age", "--skip", "scheduler")  # fmt: skip
    assert result.exit_code == 3
    assert _failed(result) == {"sim_ready", "database"}
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["sim_health"]["ok"] and checks["sim_ready"]["detail"].startswith(
        "GET /ready: 503"
    )


def test_alert_webhook_receives_the_failure(healthy, webhook: Webhook) -> None:
    url = webhook.url("/hooks/T000/s3cr3t-token-value")
    result = healthy("--json", "--min-free-disk", "1000TB", "--alert-webhook", url)
    assert result.exit_code == 3
    assert len(webhook.received) == 1
    path, body = webhook.received[0]
    assert path == "/hooks/T000/s3cr3t-token-value"
    assert body["source"] == "emrops" and body["event"] == "health_failed"
    assert body["failed"] == ["disk_space"]
    assert body["text"].startswith(f"emrops health on {body['host']}: 1 check(s) failed: disk")
    assert {c["name"] for c in body["checks"]} == set(CHECKS)
    report = json.loads(result.stdout)
    assert report["alert"] == {"sent": True, "status": 200, "error": None}
    assert "s3cr3t-token-value" not in result.stdout + result.stderr
    # healthy: no alert
    assert healthy("--alert-webhook", url).exit_code == 0
    assert len(webhook.received) == 1
    # from the environment (a URL may hold a token: never from the config file)
    result = healthy("--json", "--max-backup-age", "1ms",
                     env={"EMROPS_HEALTH_ALERT_WEBHOOK": url})  # fmt: skip
    assert result.exit_code == 3 and webhook.received[-1][1]["failed"] == ["backup_age"]


def test_alert_webhook_down_still_exits_3(healthy) -> None:
    hook = Webhook(status=500)
    try:
        result = healthy("--json", "--min-free-disk", "1000TB", "--alert-webhook",
                         hook.url("/x"))  # fmt: skip
    finally:
        hook.close()
    assert result.exit_code == 3
    assert json.loads(result.stdout)["alert"] == {"sent": False, "status": 500, "error": "HTTP 500"}
    dead = healthy("--json", "--min-free-disk", "1000TB", "--alert-webhook",
                   f"http://127.0.0.1:{free_port()}/hook")  # fmt: skip
    assert dead.exit_code == 3
    assert json.loads(dead.stdout)["alert"]["sent"] is False


def test_webhook_in_config_file_is_refused(cli, tmp_path: Path) -> None:
    (tmp_path / "emrops.toml").write_text('[health]\nalert_webhook = "https://x/y"\n')
    result = cli("health")
    assert result.exit_code == 2
    assert "health.alert_webhook must not be stored in" in result.stderr


def test_timeout_bounds_each_check_against_a_silent_server(cli, blackhole: int) -> None:
    # sim server and PostgreSQL both accept and never answer: three checks, each cut at --timeout
    started = time.monotonic()
    result = cli(
        "health", "--url", f"http://127.0.0.1:{blackhole}", "--timeout", "2s",
        "--db", f"postgresql://postgres@127.0.0.1:{blackhole}/nope",
        "--skip", "backup_age", "--skip", "disk_space", "--skip", "scheduler", "--json",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.exit_code == 3, result.stderr
    assert elapsed < 3 * 2 + 2.5, elapsed
    details = {c["name"]: c["detail"] for c in json.loads(result.stdout)["checks"]}
    assert details["sim_health"] == f"http://127.0.0.1:{blackhole}/health unreachable (ReadTimeout)"
    assert details["sim_ready"] == f"http://127.0.0.1:{blackhole}/ready unreachable (ReadTimeout)"
    assert details["database"].endswith(f"127.0.0.1:{blackhole}/nope: connection timeout expired")
