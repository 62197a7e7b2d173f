"""Crash safety: SIGKILL mid-copy, then --resume (or rollback) on EMRsim's real schema."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PG_HOST, create_pg_database, drop_pg_database
from tests.migrate.conftest import pg, sha256


def _start_run(src: str, dst: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emrops",
            "migrate-db",
            "run",
            "--from",
            src,
            "--to",
            dst,
            "--jobs",
            "1",
            "--json",
        ],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )


def _kill_mid_copy(proc: subprocess.Popen, dst: str) -> None:
    """SIGKILL the run while it is inside COPY of the messages table."""
    deadline = time.monotonic() + 60
    with pg(dst) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND query LIKE 'COPY \"messages\"%%'"
            ).fetchone()
            if row[0]:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                return
            if proc.poll() is not None:
                pytest.fail(f"run finished before it could be killed: {proc.stderr.read()}")
            time.sleep(0.005)
    pytest.fail("COPY of messages never started")


def _checksums(url: str) -> dict[str, tuple[int, int]]:
    with pg(url) as conn:
        return {
            r[0]: (r[1], int(r[2]))
            for r in conn.execute(
                "SELECT item, rows, checksum FROM emrops_migration WHERE kind = 'table'"
            )
        }


@pytest.fixture
def emrsim_db(cli, tmp_path: Path) -> Path:
    path = tmp_path / "emrsim.db"
    seeded = cli(
        "sim",
        "seed",
        "--db",
        f"sqlite:///{path}",
        "--sessions",
        "1500",
        "--messages-per-session",
        "100",
        "--seed",
        "3",
    )
    assert seeded.exit_code == 0, seeded.stderr
    return path


def test_sigkill_then_resume_equals_clean_run_and_rollback_after_crash(
    cli, emrsim_db: Path, pg_url: str, tmp_path: Path
) -> None:
    src = f"sqlite:///{emrsim_db}"
    before = sha256(emrsim_db)
    # crash, then roll back: nothing of ours is left
    _kill_mid_copy(_start_run(src, pg_url, tmp_path), pg_url)
    shown = cli("migrate-db", "status", "--to", pg_url, "--json")
    assert shown.exit_code == 4 and "--resume" in shown.stderr  # unfinished: pending
    status = json.loads(shown.stdout)
    assert (status["state"], status["step"], status["journal_state"]) == (
        "interrupted",
        "copying",
        "copying",
    )
    rb = cli("migrate-db", "rollback", "--to", pg_url, "--yes")
    assert rb.exit_code == 0, rb.stderr
    with pg(pg_url) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                "c.relnamespace WHERE nspname = 'public'"
            ).fetchone()[0]
            == 0
        )
    # crash again, then resume
    _kill_mid_copy(_start_run(src, pg_url, tmp_path), pg_url)
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0  # rolled back
    resumed = cli("migrate-db", "run", "--from", src, "--to", pg_url, "--resume", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    data = json.loads(resumed.stdout)
    assert data["resumed"] and data["verify"]["problems"] == []
    copied_now = {t["table"] for t in data["tables"] if t["copied_now"]}
    assert "messages" in copied_now
    assert cli("migrate-db", "verify", "--from", src, "--to", pg_url).exit_code == 0
    # a clean run elsewhere gives exactly the same content
    name = create_pg_database()
    clean_url = f"postgresql+psycopg://postgres@{PG_HOST}/{name}"
    try:
        clean = cli("migrate-db", "run", "--from", src, "--to", clean_url, "--json")
        assert clean.exit_code == 0, clean.stderr
        assert _checksums(clean_url) == _checksums(pg_url)
        with pg(pg_url) as a, pg(clean_url) as b:
            q = "SELECT count(*), max(id) FROM messages"
            assert a.execute(q).fetchone() == b.execute(q).fetchone()
            assert a.execute(q).fetchone()[0] == 150_000
            # the app can keep inserting: identity is past max(id)
            a.execute(
                "INSERT INTO messages (session_id, role, content, created_at, tokens) "
                "SELECT session_id, 'student', 'hi', now(), 1 FROM messages LIMIT 1"
            )
    finally:
        drop_pg_database(name)
    assert sha256(emrsim_db) == before
    _app_works_on(pg_url)


def _app_works_on(url: str) -> None:
    """EMRsim itself runs on the migrated database: reads old rows, writes new ones."""
    from fastapi.testclient import TestClient

    from emrops.sim.app import create_app

    with pg(url) as conn:
        sid = conn.execute("SELECT id::text FROM sessions ORDER BY started_at LIMIT 1").fetchone()[
            0
        ]
    with TestClient(create_app(url, vitals_interval=5, maintenance_poll=0.2)) as client:
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and ready["schema_revision"] == "0001_initial"
        history = client.get(f"/api/sessions/{sid}/messages?after=0").json()
        assert history["items"] and history["items"][0]["session_id"] == sid
        created = client.post("/api/sessions", json={"scenario_id": 1})
        assert created.status_code == 201, created.text
        posted = client.post(
            f"/api/sessions/{created.json()['id']}/messages",
            json={"content": "hello after migration"},
        )
        assert posted.status_code == 201, posted.text
        assert posted.json()["student"]["id"] > 150_000
