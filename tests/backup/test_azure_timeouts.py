"""Azure store operations are bounded: connect/read timeouts and a retry budget, so a silent
endpoint (a socket that accepts and never answers) fails in seconds with its address named;
an endpoint that answers a bare 404 is an error, only ContainerNotFound means "no backups"."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.backup.conftest import conn_string


def _http(status: int, headers: dict[str, str]) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_silent_endpoint_fails_within_15s_by_default(cli, blackhole: int, monkeypatch) -> None:
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", conn_string(blackhole))
    started = time.monotonic()
    result = cli("backup", "list", "--store", "azure://silent/emrsim")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert elapsed < 15, elapsed
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        "Error: no answer from Azure Blob Storage for azure://silent/emrsim at "
        f"http://127.0.0.1:{blackhole}/devstoreaccount1"
    )
    assert "Eby8" not in result.stderr


def test_timeouts_and_budget_are_configurable(cli, blackhole: int, monkeypatch) -> None:
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", conn_string(blackhole))
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_READ_TIMEOUT", "0.5s")
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_RETRY_BUDGET", "6s")
    started = time.monotonic()
    result = cli("backup", "list", "--store", "azure://silent/emrsim")
    elapsed = time.monotonic() - started
    assert result.exit_code == 1 and "no answer from Azure Blob Storage" in result.stderr
    # one retry fits (0.5 s + 4±0.5 s backoff + 0.5 s <= 6 s), the next (10 s backoff) does not
    assert 4 <= elapsed < 7, elapsed


def test_bare_404_is_an_error_not_an_empty_store(cli, monkeypatch) -> None:
    server, port = _http(404, {})
    try:
        monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", conn_string(port))
        result = cli("backup", "list", "--store", "azure://c/emrsim", "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.splitlines()[0] == (
        f"Error: http://127.0.0.1:{port}/devstoreaccount1/c answered 404 without an Azure "
        "Storage error code for azure://c/emrsim: it does not look like Azure Blob Storage"
    )


def test_container_not_found_means_no_backups_yet(cli, monkeypatch) -> None:
    server, port = _http(404, {"x-ms-error-code": "ContainerNotFound"})
    try:
        monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", conn_string(port))
        result = cli("backup", "list", "--store", "azure://c/emrsim", "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["backups"] == []
