"""Slow and lying clients against a real `emrops sim serve` process (campaign 13).

Before: a connection that sent nothing, half a head, a body shorter than its Content-Length,
a chunked body without its last chunk or a body dribbled byte by byte was held for ever
(before authentication); 300 idle connections under a 256 open-file limit turned every new
client away. Now each is closed after EMROPS_SIM_CLIENT_TIMEOUT (1 s here) with 408 (or
without an answer when nothing was sent), and the server raises its soft open-file limit.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.sim.conftest import Server, init_db, wait_for

TIMEOUT_ENV = {"EMROPS_SIM_CLIENT_TIMEOUT": "1"}
POST_HEAD = b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module's tests (each waits for what it opened to be released)."""
    folder = tmp_path_factory.mktemp("sim13")
    db = init_db(f"sqlite:///{folder / 'emrsim.db'}")
    port = free_port()
    log_path = folder / "server.log"
    env = {**os.environ, "EMROPS_SIM_VITALS_INTERVAL": "0.5", **TIMEOUT_ENV}
    command = [sys.executable, "-m", "emrops", "sim", "serve", "--port", str(port), "--db", db]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=folder
        )
    started = Server(proc, port, log_path, command)
    try:
        started.wait_healthy()
        yield started
    finally:
        started.stop(timeout=5)


def _open(server: Server, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    if payload:
        sock.sendall(payload)
    return sock


def _answer_and_time(sock: socket.socket, started: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and when it closed."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic() - started


def _status_and_code(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)["error"]["code"]


def _rss_kib(server: Server) -> int:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fds(server: Server) -> int:
    return len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"GET /health HTTP/1.1\r\nHost: x\r\n", id="head-never-ends"),
        pytest.param(POST_HEAD + b'Content-Length: 100\r\n\r\n{"scen', id="short-body"),
        pytest.param(
            POST_HEAD + b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"sce\r\n', id="last-chunk-never"
        ),
    ],
)
def test_an_unfinished_request_gets_408_within_the_client_timeout(
    server: Server, payload: bytes
) -> None:
    started = time.monotonic()
    answer, took = _answer_and_time(_open(server, payload), started)
    assert _status_and_code(answer) == (408, "request_timeout")
    assert took < 4  # 1 s timeout + 1 s sweep, with room for a busy machine


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: Server) -> None:
    started = time.monotonic()
    answer, took = _answer_and_time(_open(server, b""), started)
    assert answer == b""
    assert took < 4


def test_a_body_dribbled_below_the_minimum_rate_is_refused(server: Server) -> None:
    sock = _open(server, POST_HEAD + b"Content-Length: 200\r\n\r\n")
    started = time.monotonic()
    sent = 0
    try:
        while time.monotonic() - started < 8:
            sock.sendall(b" ")  # every 0.2 s: no gap reaches the timeout, the rate is 5 B/s
            sent += 1
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    sock.settimeout(2)
    try:
        answer = sock.recv(65536)
    except (ConnectionResetError, TimeoutError):
        answer = b""
    sock.close()
    assert sent < 200
    assert time.monotonic() - started < 5
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_steady_client_and_keep_alive_are_not_cut(server: Server) -> None:
    body = json.dumps({"scenario_id": 1}).encode()
    with _open(server, POST_HEAD + f"Content-Length: {len(body)}\r\n\r\n".encode()) as sock:
        time.sleep(0.6)  # a pause in the body shorter than the timeout
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 201 ")
    with server.http() as http:  # keep-alive idles between requests are uvicorn's (5 s)
        assert http.get("/health").status_code == 200
        time.sleep(2.5)
        assert http.post("/api/sessions", json={"scenario_id": 1}).status_code == 201


def test_200_slow_connections_do_not_starve_a_client_and_are_released(server: Server) -> None:
    before = _fds(server)
    payloads = [b"", b"GET /health HTTP/1.1\r\n", POST_HEAD + b"Content-Length: 9\r\n\r\n{"]
    socks = [_open(server, payloads[i % 3]) for i in range(200)]
    try:
        started = time.monotonic()
        with server.http() as http:
            assert http.post("/api/sessions", json={"scenario_id": 1}).status_code == 201
        assert time.monotonic() - started < 2
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and _fds(server) > before + 5:
            time.sleep(0.2)
        # before: all 200 stayed open (and their descriptors with them)
        assert _fds(server) <= before + 5
    finally:
        for sock in socks:
            sock.close()


def test_the_soft_open_file_limit_is_raised_to_the_hard_one(
    sqlite_db: str, start_server: Callable[..., Server]
) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard < 1024:
        pytest.skip(f"hard open-file limit {hard} leaves nothing to raise")
    # the child inherits a soft limit of 256 (as under `ulimit -Sn 256`)
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        server = start_server("--db", sqlite_db, env=TIMEOUT_ENV, wait=False)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, old)
    server.wait_healthy()
    limits = Path(f"/proc/{server.proc.pid}/limits").read_text()
    line = next(row for row in limits.splitlines() if row.startswith("Max open files"))
    assert int(line.split()[3]) == hard
    socks = [_open(server, b"") for _ in range(300)]
    try:
        # before: the 257th descriptor failed and this client was disconnected unanswered
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
    finally:
        for sock in socks:
            sock.close()


def _masked_ping(payload: bytes) -> bytes:
    mask = os.urandom(4)
    return (
        bytes([0x89, 0x80 | len(payload)])
        + mask
        + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    )


def test_a_ping_flood_from_a_client_that_never_reads_does_not_grow_the_server(
    server: Server,
) -> None:
    with server.http() as http:
        sid = http.post("/api/sessions", json={"scenario_id": 1}).json()["id"]
    sock = _open(server, b"")
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws/sessions/{sid} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(4096).startswith(b"HTTP/1.1 101 ")
    before = _rss_kib(server)
    pings = _masked_ping(b"p" * 125) * 1000
    sock.settimeout(2)
    sent = 0
    started = time.monotonic()
    try:
        while time.monotonic() - started < 5:
            sock.sendall(pings)  # and never read a pong
            sent += 1000
    except TimeoutError:
        pass  # the server stopped reading from us: back-pressure
    try:
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200
        # before: every pong was buffered (about 30 MB a second of them)
        grown_mib = (_rss_kib(server) - before) / 1024
        assert grown_mib < 20, f"{sent} pings grew the server by {grown_mib:.0f} MiB"
    finally:
        sock.close()


def _big_session(server: Server, messages: int) -> str:
    with server.http() as http:
        sid = str(http.post("/api/sessions", json={"scenario_id": 1}).json()["id"])
        for _ in range(messages):
            http.post(f"/api/sessions/{sid}/messages", json={"content": "é" * 3990})
    return sid


def _ask_page(server: Server, sid: str, times: int = 1) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    request = f"GET /api/sessions/{sid}/messages?limit=500 HTTP/1.1\r\nHost: x\r\n\r\n"
    sock.sendall(request.encode() * times)  # pipelined
    return sock


def test_clients_that_never_read_their_answer_are_dropped(server: Server) -> None:
    sid = _big_session(server, 250)  # a page of about 2 MB: more than the kernel buffers hold
    before = _fds(server)
    # pipelined: with one request uvicorn's keep-alive close frees the socket after 5 s; with
    # the next ones waiting, nothing did
    socks = [_ask_page(server, sid, times=3) for _ in range(20)]
    try:
        # the server builds the 60 pages first (seconds on a busy machine)
        assert wait_for(lambda: _fds(server) >= before + 15, 10, 0.1)
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and _fds(server) > before + 2:
            time.sleep(0.2)
        # before: each held its unread answer (and descriptor) for ever, even after keep-alive
        assert _fds(server) <= before + 2
    finally:
        for sock in socks:
            sock.close()


def test_a_slow_but_steady_reader_gets_its_whole_answer(server: Server) -> None:
    sid = _big_session(server, 50)
    with _ask_page(server, sid) as sock:
        data = b""
        length = None
        started = time.monotonic()
        while time.monotonic() - started < 20:
            time.sleep(0.1)  # about 160 KB/s: slower than the server, faster than 1 KiB/s
            chunk = sock.recv(16384)
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if length is None and body:
                fields = dict(h.split(b": ", 1) for h in head.split(b"\r\n")[1:])
                length = int(fields[b"content-length"])
            if length is not None and len(body) >= length:
                break
        assert time.monotonic() - started > 1.5  # longer than the 1 s timeout
    assert head.startswith(b"HTTP/1.1 200 ")
    assert length is not None and len(body) == length
    assert len(json.loads(body)["items"]) == 100


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs the right to mount: skipped without it)."""
    volume = tmp_path / "volume"
    volume.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(volume)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], capture_output=True)


def test_a_full_disk_is_named_and_shown_by_ready_and_writes_recover(
    small_volume: Path, start_server: Callable[..., Server]
) -> None:
    db = init_db(f"sqlite:///{small_volume / 'emrsim.db'}")
    filler = small_volume / "filler"
    filler.write_bytes(b"\0" * 512 * 1024)  # freed later: the disk gets room again
    server = start_server("--db", db, env=TIMEOUT_ENV)
    with server.http() as http:
        sid = http.post("/api/sessions", json={"scenario_id": 1}).json()["id"]
        for _ in range(2000):
            answer = http.post(f"/api/sessions/{sid}/messages", json={"content": "x" * 3900})
            if answer.status_code != 201:
                break
        # before: 503 database_unavailable "retry shortly", and /ready said ready
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "storage_full"
        assert answer.headers["retry-after"] == "60"
        ready = http.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["error"]["code"] == "storage_full"
        assert http.get(f"/api/sessions/{sid}/messages?limit=5").status_code == 200
        filler.unlink()
        assert http.post(f"/api/sessions/{sid}/messages", json={"content": "hi"}).status_code == 201
    assert "Traceback" not in server.log()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 30000 + "]" * 30000, id="nested-30000-deep"),
        pytest.param('{"scenario_id": 1' + "0" * 5000 + "}", id="integer-of-5001-digits"),
    ],
)
def test_json_the_parser_cannot_take_is_malformed_json(server: Server, body: str) -> None:
    with server.http() as http:
        answer = http.post(
            "/api/sessions", content=body.encode(), headers={"content-type": "application/json"}
        )
    # before: 400 bad_request "There was an error parsing the body" (FastAPI's own words)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "malformed_json"
