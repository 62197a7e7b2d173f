"""`loadtest run` against servers that answer, but not like the sim server (campaign 12)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

Answer = Callable[[str, str], tuple[int, bytes]]


@pytest.fixture
def fake_server() -> Iterator[Callable[[Answer], str]]:
    """fake_server(answer) -> base URL of an HTTP server whose answer(method, path) gives
    (status, JSON body) for every request."""
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer) -> str:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _reply(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                status, body = answer(self.command, self.path)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _reply

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client hanging up is not news (and would go to the CLI's stderr)

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _sim_like(message_answer: tuple[int, bytes]) -> Answer:
    scenarios = json.dumps({"items": [{"id": 1}]}).encode()

    def answer(method: str, path: str) -> tuple[int, bytes]:
        if path == "/health":
            return 200, b'{"status": "ok"}'
        if path == "/api/scenarios":
            return 200, scenarios
        if method == "POST" and path == "/api/sessions":
            return 201, json.dumps({"id": str(uuid.uuid4())}).encode()
        return message_answer

    return answer


def test_a_201_with_an_error_body_is_counted_as_an_error_not_a_pass(cli, fake_server) -> None:
    # Before: chat counted any 201 as a stored message; budgets passed, exit 0.
    url = fake_server(_sim_like((201, b'{"error": {"code": "database_unavailable"}}')))
    result = cli(
        "loadtest", "run", "--url", url, "--scenario", "chat", "--rate", "20/s",
        "--duration", "1s", "--budget", "error_rate<1%", "--json",
    )  # fmt: skip
    assert result.exit_code == 3, result.stderr
    data = json.loads(result.stdout)
    assert data["passed"] is False
    assert "error_rate<1%" in result.stdout
    assert "protocol" in result.stdout  # the error kind is named


@pytest.mark.parametrize(
    "scenarios_body",
    [b"{}", b"[]", b'{"items": [{"name": "x"}]}', b'{"items": "x"}', b"null"],
)
def test_a_server_that_is_not_the_sim_server_is_named_not_unexpected(
    cli, fake_server, scenarios_body: bytes
) -> None:
    # Before: "Error: unexpected KeyError: 'items'" (exit 1 with the report-a-bug hint).
    def answer(method: str, path: str) -> tuple[int, bytes]:
        return (200, b'{"status": "ok"}') if path == "/health" else (200, scenarios_body)

    url = fake_server(answer)
    result = cli("loadtest", "run", "--url", url, "--rate", "5/s", "--duration", "1s")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: load test not started: {url} does not answer like an EMRsim sim server"
    ), result.stderr
    assert "unexpected" not in result.stderr
