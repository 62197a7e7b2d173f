"""Fixtures for load tests: real sim servers (tests/sim's fixtures) and a stalling server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.sim.conftest import Server, init_db, start_server, wait_for  # noqa: F401

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def sim_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One sim server on an initialised SQLite file, shared by a module's tests (a server
    takes seconds to start on a busy machine; the tests read deltas of its counters)."""
    folder = tmp_path_factory.mktemp("sim")
    db = init_db(f"sqlite:///{folder / 'emrsim.db'}")
    port = free_port()
    log_path = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    command = [sys.executable, "-m", "emrops", "sim", "serve", "--port", str(port), "--db", db]
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=folder
        )
    server = Server(proc, port, log_path, command)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop(timeout=5)


@pytest.fixture
def stall_server(tmp_path: Path) -> Iterator[Callable[[int, float], str]]:
    """stall_server(n, seconds) -> base URL of a server whose n-th /health blocks it."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(stall_at: int, stall_for: float) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "stall_server.py"),
                str(port),
                str(stall_at),
                str(stall_for),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(url + "/favicon", timeout=0.5).status_code == 404
            except httpx.HTTPError:
                return False

        assert wait_for(up, 15, 0.1), "stall server did not start"
        return url

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:  # still inside its stall: SIGTERM waits for the loop
            proc.kill()
            proc.wait(5)


def metric(server_url: str, line_prefix: str) -> float:
    """The value of the first /metrics sample starting with ``line_prefix`` (0 if absent)."""
    for line in httpx.get(server_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def load_json(text: str) -> dict:
    return json.loads(text)
