"""Hostile input against a real `emrops sim serve` process (campaign 12)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.sim.conftest import Server

TOKEN = "campaign12-token-0123456789"
MIB = 1024 * 1024


def _rss_kib(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture
def server(sqlite_db: str, start_server: Callable[..., Server]) -> Server:
    return start_server("--db", sqlite_db, env={"EMROPS_SIM_TOKEN": TOKEN})


def _trickle_header(server: Server, total: int) -> tuple[int, bytes]:
    """Send one endless header line (no auth) until the server closes; return bytes sent and
    what it answered."""
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /api/scenarios HTTP/1.1\r\nHost: x\r\nX-Pad: ")
        try:
            while sent < total:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (ConnectionResetError, BrokenPipeError):
            pass
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    return sent, answer


def test_an_endless_header_line_is_refused_with_431_and_does_not_grow_the_server(
    server: Server,
) -> None:
    # Before: uvicorn's httptools parser buffered the whole header (50 MB per connection).
    before = _rss_kib(server)
    for _ in range(3):
        sent, answer = _trickle_header(server, 30 * MIB)
        assert sent < 4 * MIB
        assert answer.startswith(b"HTTP/1.1 431 ")
        body = json.loads(answer.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "headers_too_large"
    assert _rss_kib(server) - before < 20 * 1024


def test_many_ordinary_headers_under_the_head_limit_still_work(server: Server) -> None:
    headers = {f"X-H{i}": "v" * 20 for i in range(1000)}  # about 30 KB of head
    with server.http(headers={"Authorization": f"Bearer {TOKEN}", **headers}) as http:
        assert http.get("/api/scenarios").status_code == 200
        # and keep-alive requests after it on the same connection
        assert http.post("/api/sessions", json={"scenario_id": 1}).status_code == 201
        assert http.get("/api/scenarios").status_code == 200
