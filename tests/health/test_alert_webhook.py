"""The alert webhook never follows a redirect and has an overall deadline (a webhook that
accepts and never answers, or trickles its answer, cannot hold the health run)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from emrops.health.alert import post_alert
from emrops.health.checks import Check, HealthReport
from tests.health.conftest import Webhook


def _report() -> HealthReport:
    return HealthReport(
        ok=False,
        checked_at="2026-01-01T00:00:00.000Z",
        host="h",
        checks=[Check("disk_space", False, "1 MB free")],
    )


@pytest.fixture
def redirector(webhook: Webhook) -> Iterator[str]:
    target = webhook.url("/stolen")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.send_response(307)  # 307 keeps the method and the body: the worst case
            self.send_header("Location", target)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


def test_redirect_is_not_followed(redirector: str, webhook: Webhook) -> None:
    result = post_alert(redirector, _report(), timeout_s=5)
    assert result == {
        "sent": False,
        "status": 307,
        "error": "HTTP 307 (redirects are not followed)",
    }
    assert webhook.received == []


def _trickler(stop: threading.Event) -> tuple[socket.socket, str]:
    """Accepts, then sends one header byte every 0.2 s forever: each read is quick, the whole
    answer never ends (a per-read timeout alone would wait forever)."""
    sock = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = sock.accept()
        conn.recv(65536)
        payload = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000
        for byte in payload:
            if stop.is_set():
                break
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def test_overall_deadline_bounds_a_trickling_webhook() -> None:
    stop = threading.Event()
    sock, url = _trickler(stop)
    try:
        started = time.monotonic()
        result = post_alert(url, _report(), timeout_s=1.0)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        sock.close()
    assert elapsed < 3
    assert result == {"sent": False, "status": None, "error": "no answer within 1s"}


def test_overall_deadline_bounds_a_silent_webhook(blackhole: int) -> None:
    started = time.monotonic()
    result = post_alert(f"http://127.0.0.1:{blackhole}/hook", _report(), timeout_s=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 2, elapsed
    assert result == {"sent": False, "status": None, "error": "no answer within 1s"}
