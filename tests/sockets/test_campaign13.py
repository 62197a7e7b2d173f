"""`sockets probe` against WebSocket servers that break the protocol (campaign 13).

The fake speaks the sim server's HTTP API (sessions, messages, history) and streams each
session's messages as JSON text frames, with one hostile twist per test. Before: a text frame
that was not JSON ended the client's task with an uncaught JSONDecodeError (the report still
called it connected and counted what followed as lost, without a reason); text that was not
UTF-8 made the clients reconnect in a loop and the probe passed (exit 0) with nothing
delivered; a 101 without the right Sec-WebSocket-Accept ended in 'could not connect within 15s'
without saying why.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from aiohttp import web

Twist = str  # "not-json" | "bad-utf8" | "bad-accept" | "late-junk"


def _fake_app(twist: Twist) -> web.Application:
    ids = itertools.count(1)
    store: dict[str, list[int]] = {}

    async def health(_r: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def scenarios(_r: web.Request) -> web.Response:
        return web.json_response({"items": [{"id": 1}]})

    async def new_session(_r: web.Request) -> web.Response:
        sid = str(uuid.uuid4())
        store[sid] = []
        return web.json_response({"id": sid}, status=201)

    async def post(r: web.Request) -> web.Response:
        pair = [next(ids), next(ids)]
        store[r.match_info["sid"]] += pair
        return web.json_response(
            {"student": {"id": pair[0]}, "patient": {"id": pair[1]}}, status=201
        )

    async def history(r: web.Request) -> web.Response:
        after = int(r.query.get("after", 0))
        items = [{"id": i} for i in store[r.match_info["sid"]] if i > after]
        return web.json_response(
            {"items": items, "next_after": items[-1]["id"] if items else after}
        )

    async def stream(r: web.Request) -> web.StreamResponse:
        if twist == "bad-accept":
            assert r.transport is not None
            r.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n"
            )
            await asyncio.sleep(30)
        ws = web.WebSocketResponse()
        await ws.prepare(r)
        sid, sent = r.match_info["sid"], int(r.query.get("after", 0))
        frames, quiet_since, junked = 0, asyncio.get_running_loop().time(), False
        while not ws.closed:
            now = asyncio.get_running_loop().time()
            if twist == "late-junk" and frames and not junked and now - quiet_since > 0.4:
                await ws.send_str("<html>502 Bad Gateway</html>")  # after everything arrived
                junked = True
            for mid in [i for i in store[sid] if i > sent]:
                quiet_since = now
                frames += 1
                if frames == 2 and twist == "not-json":
                    await ws.send_str("<html>502 Bad Gateway</html>")
                elif frames == 2 and twist == "bad-utf8":
                    assert r.transport is not None
                    r.transport.write(b"\x81\x02\xff\xfe")  # a text frame, not UTF-8
                await ws.send_str(json.dumps({"type": "message", "data": {"id": mid}}))
                sent = mid
            await asyncio.sleep(0.05)
        return ws

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_get("/api/scenarios", scenarios)
    app.router.add_post("/api/sessions", new_session)
    app.router.add_post("/api/sessions/{sid}/messages", post)
    app.router.add_get("/api/sessions/{sid}/messages", history)
    app.router.add_get("/ws/sessions/{sid}", stream)
    return app


@pytest.fixture
def fake() -> Iterator[Callable[[Twist], str]]:
    """fake(twist) -> base URL of the fake sim server (its own loop in a thread)."""
    loops: list[tuple[asyncio.AbstractEventLoop, web.AppRunner, threading.Thread]] = []

    def start(twist: Twist) -> str:
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(_fake_app(twist), handle_signals=False, shutdown_timeout=0.5)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = runner.addresses[0][1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        loops.append((loop, runner, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for loop, runner, thread in loops:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def _probe(cli, url: str, *extra: str):
    return cli(
        "sockets", "probe", "--url", url, "--clients", "2", "--duration", "1.5s",
        "--rate", "10/s", "--settle", "1s", "--json", *extra,
    )  # fmt: skip


@pytest.mark.parametrize(
    "twist, named",
    [("not-json", "a text frame that is not JSON: '<html>502 Bad Gateway</html>'"),
     ("bad-utf8", "an unreadable frame")],
)  # fmt: skip
def test_a_frame_the_sim_server_never_sends_fails_the_probe_and_is_named(
    cli, fake: Callable[[Twist], str], twist: Twist, named: str
) -> None:
    result = _probe(cli, fake(twist))
    assert result.exit_code == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["passed"] is False
    assert report["totals"]["protocol_errors"] == 2, report["clients"]
    assert report["totals"]["lost"] > 0
    for client in report["clients"]:
        assert client["state"] == "protocol_error"
        assert client["protocol_error"].startswith(named)


def test_a_101_without_the_right_accept_key_is_named(cli, fake: Callable[[Twist], str]) -> None:
    result = _probe(cli, fake("bad-accept"))
    assert result.exit_code == 1
    assert "could not connect within 15s (last error: WSServerHandshakeError" in result.stderr


def test_a_foreign_frame_after_every_message_arrived_still_fails_the_probe(
    cli, fake: Callable[[Twist], str]
) -> None:
    # passed was false in --json, yet the exit code was 0: only loss and duplicates exited 3
    result = _probe(cli, fake("late-junk"))
    report = json.loads(result.stdout)
    assert report["totals"]["lost"] == 0 and report["totals"]["duplicated"] == 0, report
    assert report["totals"]["protocol_errors"] >= 1, report["clients"]
    assert report["passed"] is False
    assert result.exit_code == 3
    assert "not the simulation server's" in result.stderr
