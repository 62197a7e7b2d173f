"""Crash hygiene (issue #15 item 8): a SIGKILLed verify or restore leaves scratch behind; the
next command removes it (its pid is dead and its lock is free) and says so; a live run's
scratch is never touched.

The real entry point (``python -m emrops``) is killed mid-way: the test waits until the run's
scratch file exists and has data in it, then sends SIGKILL. One quick case of each runs by
default; the loops are in ``make test-slow``.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from emrops.scratch import claim, scratch_dir, sweep, sweep_tmp
from tests.backup.conftest import run_backup

ROWS = 12_000  # ~12 MB of random blobs: verify and restore take long enough to be caught


@pytest.fixture(scope="module")
def big_backup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from typer.testing import CliRunner

    from emrops.cli.main import app

    root = tmp_path_factory.mktemp("crash")
    db = root / "big.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
        "INSERT INTO blobs(data) SELECT randomblob(1000) FROM n",
        (ROWS,),
    )
    conn.commit()
    conn.close()
    store = root / "store"

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return CliRunner().invoke(app, list(args))

    manifest = run_backup(cli, f"sqlite:///{db}", store)
    return store, manifest["id"]


def kill_when(args: list[str], ready, env: dict[str, str], tries: int = 5) -> None:  # type: ignore[no-untyped-def]
    """Start ``python -m emrops ARGS`` and SIGKILL it once ``ready()`` is true."""
    for _ in range(tries):
        proc = subprocess.Popen(
            [sys.executable, "-m", "emrops", *args],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if ready():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return
            time.sleep(0.002)
        proc.kill()
        proc.wait()
    pytest.fail("the run always finished before it could be killed")


def _has_data(paths: list[Path]) -> bool:
    try:
        return any(p.is_file() and p.stat().st_size > 1_000_000 for p in paths)
    except OSError:
        return False


def verify_killed_then_next(store: Path, backup_id: str, tmpdir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    env = {"TMPDIR": str(tmpdir)}
    kill_when(
        ["backup", "verify", backup_id, "--store", str(store)],
        lambda: _has_data(list(tmpdir.glob("emrops-verify-*/scratch"))),
        env,
    )
    left = [p.name for p in tmpdir.iterdir()]
    assert len(left) == 1 and left[0].startswith("emrops-verify-"), left
    result = subprocess.run(
        [sys.executable, "-m", "emrops", "backup", "verify", backup_id, "--store", str(store)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"removed {tmpdir / left[0]}" in result.stderr.replace("\n", "")
    assert list(tmpdir.iterdir()) == []


def restore_killed_then_next(store: Path, backup_id: str, tmp_path: Path) -> None:
    target = tmp_path / "target.db"
    env = {"TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    args = ["backup", "restore", backup_id, "--target", str(target), "--store", str(store)]
    kill_when([*args, "--yes"], lambda: _has_data(list(tmp_path.glob(".target.db.restore-*"))), env)
    left = sorted(p.name for p in tmp_path.glob(".target.db.restore-*"))
    assert left and all(n.endswith((".tmp", "-journal", "-wal", "-shm")) for n in left), left
    result = subprocess.run(
        [sys.executable, "-m", "emrops", *args, "--yes", "--force"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "left by a run that died" in result.stderr.replace("\n", "")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "tmp")[:1] == ["target.db"]
    assert not list(tmp_path.glob(".target.db.restore-*"))
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == ROWS
    conn.close()


def test_sigkill_during_verify_then_next_verify_cleans_up(
    cli, big_backup: tuple[Path, str], tmp_path: Path
) -> None:
    store, backup_id = big_backup
    verify_killed_then_next(store, backup_id, tmp_path, cli)


def test_sigkill_during_restore_then_next_restore_cleans_up(
    big_backup: tuple[Path, str], tmp_path: Path
) -> None:
    store, backup_id = big_backup
    restore_killed_then_next(store, backup_id, tmp_path)


@pytest.mark.slow
def test_sigkill_loop(cli, big_backup: tuple[Path, str], tmp_path: Path) -> None:
    store, backup_id = big_backup
    for i in range(20):
        folder = tmp_path / f"v{i}"
        folder.mkdir()
        verify_killed_then_next(store, backup_id, folder, cli)
        folder = tmp_path / f"r{i}"
        folder.mkdir()
        restore_killed_then_next(store, backup_id, folder)


def test_live_scratch_is_never_swept(tmp_path: Path) -> None:
    """A scratch file or folder of a running run (this process) survives any sweep; one whose
    pid is dead but whose lock is still held (an inherited descriptor) survives too."""
    held = claim(tmp_path, "emrops-snapshot-", ".db")
    with scratch_dir(tmp_path, "emrops-verify-") as folder:
        assert sweep_tmp(tmp_path) == []
        assert held.path.exists() and folder.exists()
    held.release()
    # a dead pid's entry whose lock is free: removed with its sidecars
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    stale = tmp_path / f".t.db.restore-{pid}-0badcafe.tmp"
    stale.write_bytes(b"x")
    Path(f"{stale}-journal").write_bytes(b"j")
    # the same dead pid, but the lock is held (say, by a child that inherited the descriptor)
    locked = tmp_path / f".t.db.restore-{pid}-0000beef.tmp"
    locked.write_bytes(b"y")
    import fcntl

    fd = os.open(locked, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        removed = sweep(tmp_path, ".t.db.restore-", ".tmp")
    finally:
        os.close(fd)
    assert sorted(removed) == sorted([stale.name, f"{stale.name}-journal"])
    assert locked.exists()


def test_backup_run_sweeps_a_dead_runs_snapshot_and_verify_scratch(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leftovers of any command are removed by the next run of any of them (here backup run)."""
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", str(tmpdir))  # gettempdir() caches its answer
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)
    (tmpdir / f"emrops-snapshot-{pid}-0123abcd.db").write_bytes(b"x" * 100)
    (tmpdir / f"emrops-snapshot-{pid}-0123abcd.db-journal").write_bytes(b"j")
    (tmpdir / f"emrops-verify-{pid}-89abcdef").mkdir()
    (tmpdir / f"emrops-verify-{pid}-89abcdef" / "scratch").write_bytes(b"y" * 100)
    (tmpdir / "someone-elses-file").write_bytes(b"keep")
    db = tmp_path / "app.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    result = cli("backup", "run", "--db", f"sqlite:///{db}", "--store", str(tmp_path / "s"))
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmpdir.iterdir()) == ["someone-elses-file"]
