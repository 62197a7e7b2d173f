"""Fixtures for the backup tests: seeded databases (real SQLite, real PostgreSQL), stores,
Azurite (the Azure Blob emulator, from node_modules) and helpers to run emrops in a
subprocess (SIGKILL, RLIMIT_FSIZE)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrops.db.engine import create_engine
from emrops.db.migrations_api import upgrade
from emrops.sim.catalog import ensure_scenarios
from emrops.sim.seed import seed_database
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
AZURITE = ROOT / "node_modules" / ".bin" / "azurite-blob"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def conn_string(port: int) -> str:
    return (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={DEV_KEY};BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )


def seed(url: str, sessions: int = 20, messages: int = 10) -> str:
    engine = create_engine(url)
    try:
        upgrade(engine)
        ensure_scenarios(engine)
        seed_database(engine, sessions=sessions, messages_per_session=messages, seed=7)
    finally:
        engine.dispose()
    return url


@pytest.fixture
def seeded_sqlite(sqlite_url: str) -> str:
    return seed(sqlite_url)


@pytest.fixture
def seeded_pg(pg_url: str) -> str:
    return seed(pg_url)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "backups"


def json_of(result) -> dict:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def run_backup(cli, db: str, store: str | Path, *extra: str) -> dict:  # type: ignore[no-untyped-def]
    return json_of(cli("backup", "run", "--db", db, "--store", str(store), "--json", *extra))[
        "manifest"
    ]


def restore_new(cli, store: str | Path, backup_id: str, target: str) -> dict:  # type: ignore[no-untyped-def]
    """``backup restore ID --target TARGET --yes`` (a new file or database), exit 0; its JSON."""
    return json_of(
        cli("backup", "restore", backup_id, "--target", target, "--yes", "--store", str(store),
            "--json")
    )  # fmt: skip


def listed(cli, store: str | Path) -> list[dict]:  # type: ignore[no-untyped-def]
    return json_of(cli("backup", "list", "--store", str(store), "--json"))["backups"]


def emrops_proc(*args: str, env: dict[str, str] | None = None, preexec=None, timeout: float = 120):  # type: ignore[no-untyped-def]
    """Run ``python -m emrops ARGS`` in a subprocess (the real entry point)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "emrops", *args],
        capture_output=True,
        text=True,
        env=full_env,
        preexec_fn=preexec,
        timeout=timeout,
        check=False,
    )


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"azurite exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("azurite did not start")


def start_azurite(folder: Path) -> tuple[subprocess.Popen, int]:
    if not AZURITE.exists():
        pytest.fail(f"{AZURITE} is missing: run `npm ci` (make test does)")
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            str(AZURITE),
            "--silent",
            "--loose",
            "--skipApiVersionCheck",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(port),
            "--location",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc)
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Azurite for the session; yields its connection string."""
    proc, port = start_azurite(tmp_path_factory.mktemp("azurite"))
    try:
        yield conn_string(port)
    finally:
        stop(proc)


@pytest.fixture
def azure_store(
    azurite: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> str:
    """A fresh container per test, credentials in the environment."""
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", azurite)
    name = "t" + str(abs(hash(request.node.nodeid)) % 10**12) + str(os.getpid())
    return f"azure://{name}/emrsim"


def have(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        pytest.fail(f"{tool} is not installed (make test installs it)")
    return found


def write_resealed(path: Path, doc: dict) -> None:  # type: ignore[type-arg]
    """Write a changed manifest with its seal recomputed (as a writer to the store could), so
    that verify goes past the seal to the check a test is about."""
    from emrops.backup.manifest import seal_of

    doc = {k: v for k, v in doc.items() if k != "seal"}
    path.write_text(json.dumps({**doc, "seal": seal_of(doc)}))
