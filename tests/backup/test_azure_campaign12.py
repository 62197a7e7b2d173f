"""Azure Blob answers that Azurite cannot produce, from a small fake of the Blob endpoint:
an account with shared-key access disabled (allowSharedKeyAccess: false) refusing a key, and
an immutable (WORM / legal hold) container refusing a delete."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from emrops.backup.stores.azure import AzureStore
from emrops.errors import EmropsError
from tests.backup.conftest import conn_string


def _http(status: int, code: str) -> tuple[ThreadingHTTPServer, int]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            self.send_header("x-ms-error-code", code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_DELETE = do_PUT = _answer  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class _Settings:
    def __init__(self, values: dict[str, Any]):
        self.values = values

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def test_key_refused_by_an_account_without_shared_key_access(cli, monkeypatch) -> None:
    server, port = _http(403, "KeyBasedAuthenticationNotPermitted")
    try:
        monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", conn_string(port))
        result = cli("backup", "list", "--store", "azure://c/emrsim", "--json")
    finally:
        server.shutdown()
        server.server_close()
    assert result.exit_code == 1 and result.stdout == ""
    assert "does not allow shared-key authorization" in result.stderr
    assert "KeyBasedAuthenticationNotPermitted" in result.stderr
    assert "EMROPS_AZURE_STORAGE_ACCOUNT_URL" in result.stderr
    assert "unexpected" not in result.stderr


@pytest.mark.parametrize("code", ["BlobImmutableDueToPolicy", "BlobImmutableDueToLegalHold"])
def test_delete_of_an_immutable_blob_is_an_error_naming_the_policy(code: str) -> None:
    server, port = _http(409, code)
    try:
        store = AzureStore.from_url(
            "azure://c/emrsim",
            _Settings(
                {
                    "azure.storage_connection_string": conn_string(port),
                    "azure.storage_retry_budget": 1,
                }
            ),
        )
        with pytest.raises(EmropsError) as caught:
            store.delete("20260101T000000Z/manifest.json")
    finally:
        server.shutdown()
        server.server_close()
    assert f"it is immutable (409 {code})" in caught.value.message
    assert "rotate cannot delete it" in (caught.value.hint or "")
