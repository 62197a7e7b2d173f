"""Fixtures for the simulation server: initialised databases, in-process apps, real servers.

Real servers are ``python -m emrops sim serve`` processes on free ports; every wait has a
timeout and every process started here is stopped (SIGTERM, then SIGKILL) at teardown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from emrops.db.engine import create_engine
from emrops.db.migrations_api import upgrade
from emrops.sim.app import create_app
from emrops.sim.catalog import ensure_scenarios
from tests.conftest import free_port

START_TIMEOUT = 20.0


def init_db(url: str) -> str:
    """Upgrade ``url`` to the head schema and add the catalog scenarios (like init-db)."""
    engine = create_engine(url)
    try:
        upgrade(engine)
        ensure_scenarios(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def sim_db(db_url: str) -> str:
    """An initialised database, once on SQLite and once on PostgreSQL."""
    return init_db(db_url)


@pytest.fixture
def sqlite_db(sqlite_url: str) -> str:
    return init_db(sqlite_url)


@pytest.fixture
def pg_db(pg_url: str) -> str:
    return init_db(pg_url)


@pytest.fixture
def client(sim_db: str) -> Iterator[TestClient]:
    """The app in process (lifespan running) on an initialised database."""
    with TestClient(create_app(sim_db, vitals_interval=0.2, maintenance_poll=0.1)) as test_client:
        yield test_client


@dataclass
class Server:
    """A running ``emrops sim serve`` process."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10.0, **kwargs)  # type: ignore[arg-type]

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until /health answers; fail the test with the server's log if it never does."""
        if not wait_for(lambda: _healthy(self) or self.proc.poll() is not None, timeout, 0.1):
            pytest.fail(f"server did not answer /health in {timeout}s:\n{self.log()}")
        if self.proc.poll() is not None:
            pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait; returns the exit code (SIGKILL after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def _healthy(server: Server) -> bool:
    try:
        return httpx.get(server.url + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """start_server("--db", url, root_args=("--config", path), env={...}) -> Server, once /health
    answers (vitals every 0.5 s unless env says otherwise)."""
    started: list[Server] = []

    def start(
        *args: str,
        root_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Server:
        port = free_port()
        log_path = tmp_path / f"server-{port}.log"
        full_env = {**os.environ, "EMROPS_SIM_VITALS_INTERVAL": "0.5", **(env or {})}
        command = [sys.executable, "-m", "emrops", *root_args, "sim", "serve", "--port", str(port)]
        command += args
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                command, stdout=log_file, stderr=subprocess.STDOUT, env=full_env, cwd=tmp_path
            )
        server = Server(proc, port, log_path, command)
        started.append(server)
        if wait:
            server.wait_healthy()
        return server

    yield start
    for server in started:
        server.stop(timeout=5)
