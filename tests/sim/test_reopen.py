"""An SQLite file replaced by rename under a running server (not the way restore does it):
refused at once (503, never the old file's data), then reopened by the poll or SIGHUP."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from emrops.sim.app import create_app
from tests.sim.conftest import Server, wait_for


def _copy(path: Path, to: Path) -> None:
    """A consistent copy of the database at ``path`` (no -wal left beside it)."""
    source = sqlite3.connect(path)
    target = sqlite3.connect(to)
    try:
        source.backup(target)
    finally:
        target.close()
        source.close()


def _session(http: httpx.Client | TestClient) -> str:
    response = http.post("/api/sessions", json={"scenario_id": 1})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _sessions_in(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM sessions").fetchone()[0])
    finally:
        conn.close()


def test_replaced_file_is_refused_then_reopened_on_sighup(sqlite_db: str, tmp_path: Path) -> None:
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    # A poll interval of an hour: only the first poll runs, so nothing reopens behind our back.
    app = create_app(sqlite_db, maintenance_poll=3600)
    state = app.state.sim
    with TestClient(app) as client:
        kept = _session(client)
        _copy(path, tmp_path / "copy.db")
        dropped = _session(client)  # only in the file about to be replaced
        os.replace(tmp_path / "copy.db", path)

        stale = client.get(f"/api/sessions/{dropped}")
        assert stale.status_code == 503, stale.text  # never the deleted file's data
        assert stale.json()["error"]["code"] == "database_unavailable"
        assert stale.headers["Retry-After"] == "5"
        ready = client.get("/ready")
        assert (
            ready.status_code == 503
            and "was replaced under the server" in (ready.json()["error"]["message"])
        )

        assert client.portal.call(state.reload) is True  # what SIGHUP runs
        assert client.get(f"/api/sessions/{dropped}").status_code == 404
        assert client.get(f"/api/sessions/{kept}").status_code == 200
        _session(client)
        assert client.get("/ready").json()["status"] == "ready"
        assert client.portal.call(state.reload) is False  # nothing replaced: nothing to do
    assert _sessions_in(path) == 2  # kept + the one written after the reopen, in the new file


def test_removed_file_is_refused_and_reopened_when_it_is_back(
    sqlite_db: str, tmp_path: Path
) -> None:
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    app = create_app(sqlite_db, maintenance_poll=3600)
    state = app.state.sim
    with TestClient(app) as client:
        sid = _session(client)
        _copy(path, tmp_path / "copy.db")
        path.unlink()
        assert client.get(f"/api/sessions/{sid}").status_code == 503
        assert client.portal.call(state.reload) is False  # nothing at the path to reopen
        assert not path.exists()  # and no empty database created there
        assert client.post("/api/sessions", json={"scenario_id": 1}).status_code == 503
        os.replace(tmp_path / "copy.db", path)
        assert client.portal.call(state.reload) is True
        assert client.get(f"/api/sessions/{sid}").status_code == 200


def test_postgresql_runtime_has_no_file_guard(pg_db: str) -> None:
    app = create_app(pg_db, maintenance_poll=0.05)
    state = app.state.sim
    assert state.runtime.file_guard is None
    with TestClient(app) as client:
        sid = _session(client)
        assert client.portal.call(state.reload) is False
        assert client.get(f"/api/sessions/{sid}").status_code == 200


def test_real_server_reopens_a_replaced_file_within_5s(
    start_server, sqlite_db: str, tmp_path: Path
) -> None:
    path = Path(sqlite_db.removeprefix("sqlite:///"))
    server: Server = start_server("--db", sqlite_db)
    pid = server.proc.pid
    with server.http() as http:
        kept = _session(http)
        _copy(path, tmp_path / "copy.db")
        dropped = _session(http)
        os.replace(tmp_path / "copy.db", path)
        assert wait_for(lambda: http.get(f"/api/sessions/{dropped}").status_code == 404, 5.0)
        assert http.get(f"/api/sessions/{kept}").status_code == 200
        _session(http)
        server.signal(signal.SIGHUP)  # nothing replaced since: the server says so, keeps going
        assert wait_for(lambda: "database unchanged" in server.log(), 5.0), server.log()
        assert http.get(f"/api/sessions/{kept}").status_code == 200
    assert server.proc.poll() is None and server.proc.pid == pid
    assert "was replaced (noticed by the maintenance poll): reopening it" in server.log()
    assert _sessions_in(path) == 2
