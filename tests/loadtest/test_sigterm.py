"""SIGTERM to `loadtest run` (CI cancelling the job, `kill`): the run stops, and so does the
load. Before, SIGTERM's default action ended the parent alone, and its spawned generator
processes went on sending requests for the rest of --duration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.sim.conftest import Server
from tests.sockets.restartable import alive


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc/*/stat: no kernel option needed)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_sigterm_stops_the_generator_processes(sim_sqlite: Server, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env["EMROPS_STATE_DIR"] = str(tmp_path / "state")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "emrops", "loadtest", "run",
            "--url", f"http://127.0.0.1:{sim_sqlite.port}", "--scenario", "health",
            "--rate", "20/s", "--duration", "60s", "--processes", "2",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        generators: list[int] = []
        while time.monotonic() < deadline and len(generators) < 2:
            time.sleep(0.2)
            # the spawn start method's resource tracker is a child too: generators run _child
            generators = [c for c in _children(proc.pid) if b"spawn_main" in _cmdline(c)]
        assert len(generators) >= 2, "the generator processes did not start"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert b"terminated (SIGTERM)" in err
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(g) for g in generators):
        time.sleep(0.1)
    # before: both generators still ran (and sent load) until their 60 s were over
    assert not [g for g in generators if alive(g)]
