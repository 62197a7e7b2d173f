"""`loadtest run` against servers that redirect, hang up or never finish (campaign 13).

Before: redirects were followed, so a --url answering 302 to another host measured that
host and passed (exit 0, no errors), and a POST redirected with 302 became a GET. Now a
redirect during setup stops the run naming where it points, and a 3xx during the run is an
error of kind http_3xx. Connections closed mid-response, a first byte that never comes and a
chunked response that never ends are errors, and the run ends on time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web

from tests.sim.conftest import Server

# How the fake answers GET /health after its first one (setup's): a function of the handler.
Mode = Callable[[BaseHTTPRequestHandler], None]


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, **headers: str) -> None:
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.end_headers()
    handler.wfile.write(body)


@pytest.fixture
def fake() -> Iterator[Callable[[Mode], str]]:
    """fake(mode) -> URL of a server whose first /health is 200 and later ones ``mode``."""
    servers: list[ThreadingHTTPServer] = []

    def start(mode: Mode) -> str:
        seen = {"health": 0}

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                seen["health"] += 1
                if seen["health"] == 1:
                    _send(self, 200, b'{"status": "ok"}')
                else:
                    mode(self)

        class Fake(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass

        server = Fake(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _redirect_to(url: str) -> Mode:
    def mode(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 302, b"", Location=url + handler.path)

    return mode


def _hang_up(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"sta')
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_RDWR)
    handler.close_connection = True


def _no_first_byte(handler: BaseHTTPRequestHandler) -> None:
    time.sleep(30)


def _endless_chunks(handler: BaseHTTPRequestHandler) -> None:
    handler.wfile.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    try:
        for _ in range(300):
            handler.wfile.write(b"1\r\n \r\n")
            handler.wfile.flush()
            time.sleep(0.1)
    except OSError:
        pass
    handler.close_connection = True


def _run(cli, url: str, *extra: str) -> tuple[int, dict, str]:
    result = cli(
        "loadtest", "run", "--url", url, "--scenario", "health", "--rate", "10/s",
        "--duration", "2s", "--json", *extra,
    )  # fmt: skip
    data = json.loads(result.stdout) if result.exit_code in (0, 3) else {}
    return result.exit_code, data, result.stderr


def test_a_redirect_during_setup_stops_the_run_naming_where_it_points(
    cli, sim_sqlite: Server
) -> None:
    class Always(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            _send(self, 301, b"", Location=sim_sqlite.url + self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Always)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        code, _data, err = _run(cli, url)
    finally:
        server.shutdown()
        server.server_close()
    # before: exit 0 with no errors, the sim server's latency reported as this URL's
    assert code == 1
    assert f"/health answered 301, a redirect to {sim_sqlite.url}/health" in err


def test_a_redirect_during_the_run_is_an_error_not_a_pass(
    cli, fake: Callable[[Mode], str], sim_sqlite: Server
) -> None:
    code, data, err = _run(cli, fake(_redirect_to(sim_sqlite.url)), "--budget", "error_rate<1%")
    assert code == 3, err
    kinds = data["summary"]["error_kinds"]
    assert kinds.get("http_302", 0) == data["summary"]["completed"] > 0


@pytest.mark.parametrize(
    "mode, kind",
    [(_hang_up, None), (_no_first_byte, "timeout"), (_endless_chunks, "timeout")],
    ids=["hang-up-mid-response", "no-first-byte", "endless-chunks"],
)
def test_a_broken_response_is_an_error_and_the_run_ends_on_time(
    cli, fake: Callable[[Mode], str], mode: Mode, kind: str | None
) -> None:
    started = time.monotonic()
    code, data, err = _run(cli, fake(mode), "--timeout", "1s", "--budget", "error_rate<1%")
    took = time.monotonic() - started
    assert code == 3, err
    summary = data["summary"]
    assert summary["errors"] == summary["completed"] == summary["sent"] > 0
    assert summary["ok"] == 0
    if kind is not None:
        assert set(summary["error_kinds"]) == {kind}
    assert took < 15  # 2 s of load + 1 s timeout + start-up


def _ws_chat_fake() -> web.Application:
    ids = itertools.count(1)

    async def health(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def scenarios(_r: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": 1}]})

    async def session(_r: web.Request) -> web.Response:
        return web.json_response({"id": str(uuid.uuid4())}, status=201)

    async def post(_r: web.Request) -> web.Response:
        pair = {"student": {"id": next(ids)}, "patient": {"id": next(ids)}}
        return web.json_response(pair, status=201)

    async def stream(r: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(r)
        await ws.send_str("<html>502 Bad Gateway</html>")  # a proxy's page, not a frame
        async for _msg in ws:  # until the client closes
            pass
        return ws

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/scenarios", scenarios)
    app.router.add_post("/api/sessions", session)
    app.router.add_post("/api/sessions/{sid}/messages", post)
    app.router.add_get("/ws/sessions/{sid}", stream)
    return app


@pytest.fixture
def ws_chat_fake() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(_ws_chat_fake(), shutdown_timeout=0.5)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_a_websocket_frame_that_is_not_the_sim_servers_is_a_protocol_error(
    cli, ws_chat_fake: str
) -> None:
    result = cli(
        "loadtest", "run", "--url", ws_chat_fake, "--scenario", "ws-chat", "--rate", "10/s",
        "--duration", "1s", "--timeout", "1s", "--sessions", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)["summary"]
    # before: the reader died of a JSONDecodeError and every request said ws_closed
    assert summary["error_kinds"] == {"protocol": summary["completed"]}
    assert summary["completed"] > 0
