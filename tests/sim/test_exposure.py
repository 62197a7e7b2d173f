"""``sim serve`` refuses a non-loopback address without a token (exit 2) unless --insecure."""

from __future__ import annotations

import socket

import httpx
import pytest

from emrops.sim.server import is_loopback_address
from tests.conftest import free_port
from tests.sim.conftest import Server

TOKEN = "exposure-test-token-0042"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "emrsim.example.org"])
def test_open_address_without_token_is_refused(cli, sqlite_db: str, host: str) -> None:
    port = free_port()
    result = cli("sim", "serve", "--db", sqlite_db, "--host", host, "--port", str(port))
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"Error: refusing to serve {host} without a token: anyone who can reach it could "
        "read and write every session"
    )
    assert lines[1].startswith("Try: set EMROPS_SIM_TOKEN to a long random value")
    assert "--insecure" in lines[1]
    with socket.socket() as probe:  # nothing was bound
        probe.bind(("127.0.0.1", port))


def test_open_address_with_token_serves_and_requires_it(start_server, sqlite_db: str) -> None:
    server: Server = start_server(
        "--db", sqlite_db, "--host", "0.0.0.0", env={"EMROPS_SIM_TOKEN": TOKEN}
    )
    with server.http() as anonymous:
        assert anonymous.get("/api/scenarios").status_code == 401
    with server.http(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.get("/api/scenarios").status_code == 200


def test_insecure_serves_an_open_address_without_token(start_server, sqlite_db: str) -> None:
    server: Server = start_server("--db", sqlite_db, "--host", "0.0.0.0", "--insecure")
    assert httpx.get(server.url + "/api/scenarios", timeout=5).status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.168.1.10", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback_address(host) is loopback
