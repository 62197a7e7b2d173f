"""Request limits and the token check of a real `emrops sim serve` process (RequestGuard):
refusals come before the body is read, and big bodies or frames do not grow the server."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from emrops.sim.app import create_app
from tests.sim.conftest import Server

TOKEN = "limits-token-0123456789"
AUTH = f"Bearer {TOKEN}"
MIB = 1024 * 1024


def _rss_kib(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _raw_request(server: Server, head: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    """Send ``head`` (and ``body``, which may be shorter than announced); return the status,
    headers and body of the answer. The socket is never made to send what was not given."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        header_text, _, rest = data.partition(b"\r\n\r\n")
        lines = header_text.decode().split("\r\n")
        headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(lines[0].split()[1]), headers, rest


@pytest.fixture
def server(sqlite_db: str, start_server: Callable[..., Server]) -> Server:
    return start_server("--db", sqlite_db, env={"EMROPS_SIM_TOKEN": TOKEN})


def _session(server: Server) -> str:
    with server.http(headers={"Authorization": AUTH}) as http:
        return str(http.post("/api/sessions", json={"scenario_id": 1}).json()["id"])


def test_unauthenticated_big_body_is_401_before_it_is_read(server: Server) -> None:
    sid = _session(server)
    before = _rss_kib(server)
    for _ in range(3):  # announces 200 MB each, sends none of it
        status, headers, body = _raw_request(
            server,
            f"POST /api/sessions/{sid}/messages HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 209715200\r\n",
        )
        assert status == 401
        assert headers["www-authenticate"] == "Bearer"
        assert json.loads(body)["error"]["code"] == "unauthorized"
    assert _rss_kib(server) - before < 20 * 1024
    # public endpoints stay public
    with server.http() as http:
        assert http.get("/health").status_code == 200
        assert http.get("/ready").status_code == 200
        assert http.get("/metrics").status_code == 200


def test_one_mib_body_is_413_and_the_server_does_not_grow(server: Server) -> None:
    sid = _session(server)
    path = f"/api/sessions/{sid}/messages"
    before = _rss_kib(server)
    # announced: refused from the header, before any of the body is sent
    status, _headers, body = _raw_request(
        server,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {MIB}\r\n",
    )
    assert status == 413
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large" and "65536 bytes" in error["message"]
    # chunked, no length: counted as it arrives, refused past the limit
    payload = json.dumps({"content": "x" * MIB}).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(payload[i : i + 65536]), payload[i : i + 65536])
        for i in range(0, len(payload), 65536)
    )
    status, _headers, body = _raw_request(
        server,
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        chunks + b"0\r\n\r\n",
    )
    assert status == 413
    assert json.loads(body)["error"]["code"] == "payload_too_large"
    assert _rss_kib(server) - before < 20 * 1024
    # a body under the limit still works
    with server.http(headers={"Authorization": AUTH}) as http:
        assert http.post(path, json={"content": "Where is the pain?"}).status_code == 201


def test_one_mib_websocket_frame_closes_with_a_reason(server: Server) -> None:
    sid = _session(server)
    before = _rss_kib(server)
    with connect(
        f"{server.ws_url}/ws/sessions/{sid}",
        additional_headers={"Authorization": AUTH},
        max_size=None,
        open_timeout=10,
    ) as ws:
        json.loads(ws.recv(timeout=10))  # the stream is live
        with pytest.raises(ConnectionClosed) as closed:
            ws.send("x" * MIB)
            for _ in range(100):
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert closed.value.rcvd.reason  # says why
    assert _rss_kib(server) - before < 20 * 1024


def test_ready_hides_driver_errors_from_anonymous_callers(tmp_path: Path) -> None:
    """/ready stays public (status, schema revision); the error text needs the token."""
    from fastapi.testclient import TestClient

    from tests.conftest import PG_HOST, create_pg_database, drop_pg_database
    from tests.sim.conftest import init_db

    name = create_pg_database()
    url = init_db(f"postgresql+psycopg://postgres@{PG_HOST}/{name}")
    try:
        app = create_app(url, token=TOKEN, maintenance_poll=60)
        with TestClient(app) as client:
            assert client.get("/ready").json()["status"] == "ready"
            drop_pg_database(name)  # the database goes away under the server
            anonymous = client.get("/ready")
            trusted = client.get("/ready", headers={"Authorization": AUTH})
        assert anonymous.status_code == trusted.status_code == 503
        assert anonymous.json()["error"]["message"] == "the database is unavailable"
        assert name in trusted.json()["error"]["message"]
        assert name not in anonymous.text
    finally:
        drop_pg_database(name)


def test_limit_is_configurable_in_process(sqlite_db: str) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(sqlite_db, max_body=100)) as client:
        sid = client.post("/api/sessions", json={"scenario_id": 1}).json()["id"]
        small = client.post(f"/api/sessions/{sid}/messages", json={"content": "hi"})
        big = client.post(f"/api/sessions/{sid}/messages", json={"content": "x" * 200})
        unknown = client.post(f"/api/sessions/{uuid.uuid4()}/messages", json={"content": "hi"})
    assert small.status_code == 201 and unknown.status_code == 404
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
