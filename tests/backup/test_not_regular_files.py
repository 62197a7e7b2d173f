"""A database path that names a named pipe, a socket, a device or a folder.

Opening a FIFO waits for a writer: `backup run --db` on one hung forever (a cron job holding
its slot and the store lock), as did `health` and `backup restore --target` (both read the
file's header to identify it). And `restore --target ... --force` moved anything that was not
a readable database aside, so a typo such as `sqlite:////dev/null` would have renamed the
system's device node and put a database in its place. Each is now refused at once, naming what
the path is, and nothing is changed.

Every command runs in a subprocess with a timeout, so a hang fails the test instead of the
suite.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backup.conftest import seed

TIMEOUT = 60


def emrops(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EMROPS_STATE_DIR": str(state), "NO_COLOR": "1", "CI": "true"}
    return subprocess.run(
        [sys.executable, "-m", "emrops", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe.db"
    os.mkfifo(path)
    return path


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sock.db"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    yield path
    sock.close()


@pytest.fixture
def char_device(tmp_path: Path) -> Path:
    path = tmp_path / "null.db"
    try:
        os.mknod(path, stat.S_IFCHR | 0o644, os.makedev(1, 3))  # /dev/null's numbers
    except PermissionError:
        pytest.skip("creating a device node needs root")
    return path


@pytest.mark.parametrize(
    ("kind", "said"),
    [("fifo", "named pipe (FIFO)"), ("unix_socket", "socket"), ("char_device", "character device")],
)
def test_backup_run_refuses_what_is_not_a_file(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, said: str
) -> None:
    path = request.getfixturevalue(kind)
    store = tmp_path / "store"
    # before: a FIFO hung until the timeout (the header read waits for a writer)
    result = emrops(
        "backup", "run", "--db", f"sqlite:///{path}", "--store", str(store), state=tmp_path
    )
    assert result.returncode == 2, result.stderr
    assert f"{path} is a {said}, not a database file" in result.stderr
    assert "regular file" in result.stderr
    assert "unexpected" not in result.stderr
    assert not list(store.glob("*/manifest.json"))


def test_migrate_health_and_serve_refuse_a_fifo(tmp_path: Path, fifo: Path, pg_url: str) -> None:
    url = f"sqlite:///{fifo}"
    for args in (
        ("migrate-db", "plan", "--from", url, "--to", pg_url),
        ("sim", "serve", "--db", url, "--port", "9"),
    ):
        result = emrops(*args, state=tmp_path)
        assert result.returncode != 0, (args, result.stderr)
        assert "named pipe (FIFO)" in result.stderr, (args, result.stderr)
        assert "unexpected" not in result.stderr
    # before: health hung reading the pipe to identify the database
    health = emrops(
        "health",
        "--db",
        url,
        "--json",
        "--skip",
        "sim_health",
        "--skip",
        "sim_ready",
        state=tmp_path,
    )
    assert health.returncode == 3, health.stderr
    assert "named pipe (FIFO)" in health.stdout
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.fixture
def backup_id(tmp_path: Path) -> str:
    source = tmp_path / "app.db"
    seed(f"sqlite:///{source}", sessions=3, messages=2)
    store = tmp_path / "store"
    made = emrops(
        "backup",
        "run",
        "--db",
        f"sqlite:///{source}",
        "--store",
        str(store),
        "--json",
        state=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    import json

    return str(json.loads(made.stdout)["manifest"]["id"])


@pytest.mark.parametrize("kind", ["fifo", "char_device", "folder"])
def test_restore_never_moves_aside_what_is_not_a_file(
    request: pytest.FixtureRequest, tmp_path: Path, backup_id: str, kind: str
) -> None:
    if kind == "folder":
        target = tmp_path / "var"
        (target / "lib").mkdir(parents=True)
    else:
        target = request.getfixturevalue(kind)
    before = os.stat(target)
    result = emrops(
        "backup", "restore", backup_id, "--store", str(tmp_path / "store"),
        "--target", f"sqlite:///{target}", "--yes", "--force", state=tmp_path,
    )  # fmt: skip
    # before: the FIFO hung; the device node and the folder were renamed aside (exit 0) and a
    # database was written in their place
    assert result.returncode == 2, result.stderr
    assert f"restore target {target} is a" in result.stderr
    assert "nothing was changed" in result.stderr
    after = os.stat(target)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino)
    assert not list(tmp_path.glob(f"{target.name}.before-restore-*"))
