"""`status` after a run killed during verification says interrupted, and where (#16 0g)."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.migrate.conftest import pg
from tests.migrate.test_resume import _start_run


def _step(url: str) -> str | None:
    with pg(url) as conn:
        row = conn.execute(
            "SELECT detail->>'step' FROM emrops_migration WHERE item = 'run'"
        ).fetchone()
    return row[0] if row else None


def test_a_run_killed_while_verifying_is_interrupted_not_done(
    cli, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "big.db"
    with sqlite3.connect(source) as conn:
        # JSON text is canonicalised by Python during verification: a slow enough step
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, meta JSON, r REAL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000) "
            "INSERT INTO m SELECT i, json_object('k', i, 'v', 'x' || i), i / 7.0 FROM n"
        )
    conn.close()
    proc = _start_run(f"sqlite:///{source}", pg_url, tmp_path)
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            with pg(pg_url) as conn:
                exists = conn.execute("SELECT to_regclass('emrops_migration')").fetchone()[0]
            if exists and _step(pg_url) == "verifying":
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                break
            if proc.poll() is not None:
                pytest.fail(f"run ended before verification was reached: {proc.stderr.read()}")
            time.sleep(0.01)
        else:
            pytest.fail("the run never reached verification")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    shown = cli("migrate-db", "status", "--to", pg_url, "--json")
    assert shown.exit_code == 4, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["state"], status["step"]) == ("interrupted", "verifying")
    assert "interrupted (killed or crashed) while verifying" in shown.stderr
    assert "--resume" in shown.stderr
    text = cli("migrate-db", "status", "--to", pg_url)
    assert "state: interrupted (step: verifying)" in text.stdout


def test_a_run_whose_connection_is_lost_says_so_and_status_says_failed(
    cli, tmp_path: Path, pg_url: str
) -> None:
    """PostgreSQL terminates the backend of the COPY: the run exits 1 with a hint about the
    connection (not about cast rules), `status` says failed in the copying step with the error
    (not "killed or crashed"), and --resume completes and clears it."""
    source = _big_source(tmp_path)
    proc = _start_run(f"sqlite:///{source}", pg_url, tmp_path)
    dbname = pg_url.rsplit("/", 1)[1]
    terminated = False
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None and not terminated:
            with pg(pg_url.rsplit("/", 1)[0] + "/postgres") as conn:
                terminated = any(
                    row[0]
                    for row in conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = %s AND query LIKE 'COPY%%'",
                        (dbname,),
                    )
                )
            time.sleep(0.005)
        assert terminated, "the run's COPY was never seen"
        _out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    err_text = err.decode()
    assert proc.returncode == 1, err_text
    assert "connection to PostgreSQL was lost" in err_text and "--cast" not in err_text
    shown = cli("migrate-db", "status", "--to", pg_url, "--json")
    assert shown.exit_code == 4, shown.stderr
    status = json.loads(shown.stdout)
    assert (status["state"], status["step"]) == ("failed", "copying"), status
    assert "COPY into m failed" in status["error"]
    assert "stopped with an error while copying" in shown.stderr
    resumed = cli("migrate-db", "run", "--resume", "--from", f"sqlite:///{source}", "--to", pg_url)
    assert resumed.exit_code == 0, resumed.stderr
    # the pinned backup the first attempt took (alongside its copy) is found and journaled
    assert "pre-migration backup (pinned): " in resumed.stdout, resumed.stdout
    done = json.loads(cli("migrate-db", "status", "--to", pg_url, "--json").stdout)
    assert (done["state"], done["error"]) == ("done", None)
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM m").fetchone()[0] == 1500000


def test_a_run_killed_before_journaling_its_backup_finds_it_on_resume(
    cli, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL during the copy, after the pinned backup was published but before the run
    journaled it: --resume finds that backup by the source's fingerprint and journals it,
    instead of going on without one."""
    source = _big_source(tmp_path)
    proc = _start_run(f"sqlite:///{source}", pg_url, tmp_path)
    published: list[Path] = []
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            published = list((tmp_path / "backups").glob("*/manifest.json"))
            with pg(pg_url) as conn:
                copying = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND query LIKE 'COPY%%'"
                ).fetchone()[0]
            if published and copying:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                break
            time.sleep(0.005)
        else:
            pytest.fail("never saw the backup published while the copy ran")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    backup_id = published[0].parent.name
    with pg(pg_url) as conn:
        journaled = conn.execute(
            "SELECT detail->>'backup_id' FROM emrops_migration WHERE item = 'run'"
        ).fetchone()[0]
    assert journaled is None  # killed before it could be journaled
    monkeypatch.chdir(tmp_path)  # the run's store is ./backups there
    resumed = cli("migrate-db", "run", "--resume", "--from", f"sqlite:///{source}", "--to", pg_url)
    assert resumed.exit_code == 0, resumed.stderr
    assert f"pre-migration backup (pinned): {backup_id}" in resumed.stdout, resumed.stdout


def _big_source(tmp_path: Path) -> Path:
    """1.5 million short rows: a COPY of a few seconds, long enough to be caught in."""
    source = tmp_path / "big.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, t TEXT, r REAL)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500000) "
            "INSERT INTO m SELECT i, 'row ' || i, i / 7.0 FROM n"
        )
    conn.close()
    return source
