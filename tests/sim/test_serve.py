"""``emrops sim serve`` as real processes on free ports: signals, maintenance, fan-out, workers.

WebSocket clients use the ``websockets`` sync client with a timeout on every receive.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from emrops.db import queries
from emrops.db.engine import create_engine
from tests.conftest import free_port
from tests.sim.conftest import Server, init_db, wait_for

TOKEN = "serve-test-token-42"


def _frames(ws: Any, count: int, timeout: float = 10.0, kind: str = "message") -> list[dict]:
    """The data of the next ``count`` frames of ``kind`` (others skipped)."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"only {len(got)} of {count} {kind} frames in {timeout}s"
        try:
            frame = json.loads(ws.recv(timeout=remaining))
        except TimeoutError:
            ids = [g.get("id") for g in got]
            msg = f"only {len(got)} of {count} {kind} frames in {timeout}s: {ids}"
            raise AssertionError(msg) from None
        if frame["type"] == kind:
            got.append(frame["data"])
    return got


def _new_session(http: httpx.Client, scenario_id: int = 1) -> str:
    response = http.post("/api/sessions", json={"scenario_id": scenario_id})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _say(http: httpx.Client, sid: str, content: str) -> dict:
    response = http.post(f"/api/sessions/{sid}/messages", json={"content": content})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_serve_with_token_then_sigterm_exits_0_promptly(start_server, sqlite_db: str) -> None:
    server: Server = start_server("--db", sqlite_db, env={"EMROPS_SIM_TOKEN": TOKEN})
    assert TOKEN not in server.log()
    with server.http() as anonymous:
        assert anonymous.get("/api/scenarios").status_code == 401
        assert anonymous.get("/health").status_code == 200
    with server.http(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        sid = _new_session(http)
        said = _say(http, sid, "When did it start?")
    with ws_connect(f"{server.ws_url}/ws/sessions/{sid}?after=0&token={TOKEN}") as ws:
        assert _frames(ws, 2) == [said["student"], said["patient"]]
        assert _frames(ws, 1, kind="vitals")[0]["session_id"] == sid
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    assert server.proc.wait(timeout=8) == 0, server.log()
    assert time.monotonic() - started < 5
    assert "server stopped" in server.log()


def test_workers_above_one_refused_on_sqlite(cli, sqlite_db: str) -> None:
    result = cli("sim", "serve", "--db", sqlite_db, "--workers", "2", "--port", str(free_port()))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        "Error: --workers 2 refused on SQLite: one process owns the SQLite file; "
        "scale out on PostgreSQL"
    )


def test_busy_port_is_a_clear_error(cli, sqlite_db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("sim", "serve", "--db", sqlite_db, "--port", str(port))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot listen on 127.0.0.1:{port}: ")
    assert "Try: choose another --port" in result.stderr


def test_serve_without_schema_says_run_init_db(cli, pg_url: str, tmp_path: Path) -> None:
    result = cli("sim", "serve", "--db", pg_url, "--port", str(free_port()))
    assert result.exit_code == 1
    assert "has no EMRsim schema" in result.stderr
    assert "Try: run `emrops sim init-db` on this database first" in result.stderr
    missing = cli(
        "sim", "serve", "--db", f"sqlite:///{tmp_path / 'none.db'}", "--port", str(free_port())
    )
    assert missing.exit_code == 1 and "database file not found" in missing.stderr
    assert not (tmp_path / "none.db").exists()


def test_maintenance_seen_by_a_running_server_within_a_second(
    start_server, sim_db: str, cli
) -> None:
    server = start_server("--db", sim_db)
    with server.http() as http:
        sid = _new_session(http)
        on = cli("sim", "maintenance", "on", "--db", sim_db, "--message", "cutover at 22:00 UTC")
        assert on.exit_code == 0, on.stderr
        flagged = time.monotonic()
        refused = http.post(f"/api/sessions/{sid}/messages", json={"content": "hello"})
        assert refused.status_code == 503
        assert refused.json() == {
            "error": {"code": "maintenance", "message": "cutover at 22:00 UTC"}
        }
        assert int(refused.headers["Retry-After"]) > 0
        assert http.post("/api/sessions", json={"scenario_id": 1}).status_code == 503
        assert http.get(f"/api/sessions/{sid}").status_code == 200
        assert http.get(f"/api/sessions/{sid}/messages").status_code == 200
        assert http.get("/api/scenarios").status_code == 200
        # The poller's view (fast refusals, /metrics) catches up within a second.
        assert wait_for(lambda: "emrsim_maintenance 1.0" in http.get("/metrics").text, 1.0)
        assert time.monotonic() - flagged < 1.5
        assert http.get("/ready").json()["maintenance"] is True

        assert cli("sim", "maintenance", "off", "--db", sim_db).exit_code == 0
        reopened = time.monotonic()
        assert wait_for(
            lambda: (
                http.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}).status_code
                == 201
            ),
            1.0,
            0.02,
        )
        assert time.monotonic() - reopened < 1.0


def test_resume_with_no_loss_or_duplicates_while_messages_keep_coming(
    start_server, sim_db: str
) -> None:
    server = start_server("--db", sim_db)
    total = 20
    with server.http() as http:
        sid = _new_session(http, 3)
        errors: list[BaseException] = []

        def keep_posting() -> None:
            try:
                with server.http() as poster:
                    for i in range(total):
                        _say(poster, sid, f"question number {i}")
                        time.sleep(0.02)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        poster = threading.Thread(target=keep_posting, daemon=True)
        poster.start()
        seen: list[dict] = []
        after = 0
        for chunk in (5, 7, 9):  # drop the connection three times while posts continue
            with ws_connect(f"{server.ws_url}/ws/sessions/{sid}?after={after}") as ws:
                seen += _frames(ws, chunk)
            after = seen[-1]["id"]
            time.sleep(0.05)
        poster.join(timeout=30)
        assert not poster.is_alive() and not errors, errors
        with ws_connect(f"{server.ws_url}/ws/sessions/{sid}?after={after}") as ws:
            seen += _frames(ws, 2 * total - len(seen))
        stored = http.get(f"/api/sessions/{sid}/messages", params={"limit": 500}).json()["items"]
    assert len(stored) == 2 * total
    assert [m["id"] for m in seen] == [m["id"] for m in stored]
    assert seen == stored


def test_two_instances_on_one_postgresql_fan_out(start_server, pg_db: str) -> None:
    # Vitals (and so any polling fallback) every 30 s: what arrives sooner came by NOTIFY.
    slow = {"EMROPS_SIM_VITALS_INTERVAL": "30"}
    a = start_server("--db", pg_db, env=slow, wait=False)
    b = start_server("--db", pg_db, env=slow, wait=False)
    a.wait_healthy()
    b.wait_healthy()
    with a.http() as http_a, b.http() as http_b:
        sid = _new_session(http_a)
        assert http_b.get(f"/api/sessions/{sid}").status_code == 200
        with ws_connect(f"{b.ws_url}/ws/sessions/{sid}") as on_b:
            _frames(on_b, 1, kind="vitals")  # the first sample comes at once: stream is live
            posted = time.monotonic()
            said = _say(http_a, sid, "Do you have any allergies?")
            assert _frames(on_b, 2, timeout=5) == [said["student"], said["patient"]]
            assert time.monotonic() - posted < 3
        with ws_connect(f"{a.ws_url}/ws/sessions/{sid}?after={said['patient']['id']}") as on_a:
            _frames(on_a, 1, kind="vitals")
            back = _say(http_b, sid, "Thank you")
            assert _frames(on_a, 2, timeout=5) == [back["student"], back["patient"]]


def _write_config(path: Path, db_url: str) -> None:
    path.write_text(f'db_url = "{db_url}"\n')


def test_sighup_switches_database_without_restarting(
    start_server, tmp_path: Path, pg_db: str
) -> None:
    first = init_db("sqlite:///" + str(tmp_path / "first.db"))
    config = tmp_path / "conf" / "emrops.toml"
    config.parent.mkdir()
    _write_config(config, "sqlite:///../first.db")  # relative to the config file's folder
    server = start_server(root_args=("--config", str(config)))
    pid = server.proc.pid
    with server.http() as http:
        old_sid = _new_session(http)
        with ws_connect(f"{server.ws_url}/ws/sessions/{old_sid}") as ws:
            _frames(ws, 1, kind="vitals")
            _write_config(config, pg_db)
            server.signal(signal.SIGHUP)
            error = _frames(ws, 1, kind="error")[0]
            assert error["code"] == "reconnect"
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        assert http.get(f"/api/sessions/{old_sid}").status_code == 404  # the new database
        new_sid = _new_session(http, 2)
        engine = create_engine(pg_db)
        try:
            stored = queries.get_session(engine, uuid.UUID(new_sid))
            assert stored is not None and stored.scenario_id == 2
        finally:
            engine.dispose()
        # The new database streams (and announces through LISTEN/NOTIFY) as well.
        with ws_connect(f"{server.ws_url}/ws/sessions/{new_sid}") as ws:
            said = _say(http, new_sid, "hello")
            assert _frames(ws, 2) == [said["student"], said["patient"]]

        # A config naming a database without the schema is refused; the server keeps going.
        _write_config(config, "sqlite:///" + str(tmp_path / "empty.db"))
        server.signal(signal.SIGHUP)
        assert wait_for(lambda: "cannot switch to the new database" in server.log(), 5)
        assert http.get(f"/api/sessions/{new_sid}").status_code == 200
        assert http.get("/ready").json()["status"] == "ready"
    assert server.proc.poll() is None and server.proc.pid == pid
    assert re.search(r"switched database from sqlite:///\S+first\.db to postgresql", server.log())
    assert first and server.stop() == 0


def test_workers_on_postgresql_share_sessions_and_metrics(start_server, pg_db: str) -> None:
    server = start_server("--db", pg_db, "--workers", "2")
    posts = 12
    sid = None
    for i in range(posts):
        # A new connection each time, so both workers get some of the requests.
        with server.http() as http:
            sid = sid or _new_session(http)
            _say(http, sid, f"message {i}")
    with server.http() as http:
        items = http.get(f"/api/sessions/{sid}/messages", params={"limit": 500}).json()["items"]
        assert len(items) == 2 * posts
        text = http.get("/metrics").text
    line = re.search(
        r'emrsim_http_requests_total\{method="POST",route="/api/sessions/\{session_id\}/messages",'
        r'status="201"\} (\S+)',
        text,
    )
    assert line is not None and float(line.group(1)) == posts  # summed over both workers
    # (a worker that came up after the requests logs its start a little later)
    assert wait_for(
        lambda: len(set(re.findall(r"Started server process \[(\d+)\]", server.log()))) == 2,
        10,
    ), server.log()
    assert server.stop() == 0


def test_a_stream_on_one_instance_sees_messages_posted_through_another(
    start_server, pg_db: str
) -> None:
    """Two instances on one PostgreSQL database: a WebSocket on B gets every message of 20
    concurrent POSTs sent through A, each once and in id order (announced after the commit,
    coalesced, through LISTEN/NOTIFY; B's LISTEN is live, so B does not poll)."""
    a = start_server("--db", pg_db)
    b = start_server("--db", pg_db, env={"EMROPS_SIM_VITALS_INTERVAL": "60"})
    with a.http() as http:
        sid = _new_session(http)
    statuses: list[int] = []
    with ws_connect(f"{b.ws_url}/ws/sessions/{sid}") as ws:

        def post(i: int) -> None:
            with a.http() as http:
                response = http.post(f"/api/sessions/{sid}/messages", json={"content": f"q {i}"})
                statuses.append(response.status_code)

        threads = [threading.Thread(target=post, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [201] * 20, a.log()[-3000:]
        frames = _frames(ws, 40, timeout=15)
    ids = [f["id"] for f in frames]
    assert len(ids) == 40 and ids == sorted(set(ids))
