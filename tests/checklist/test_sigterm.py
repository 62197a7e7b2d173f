"""SIGTERM to `checklist run` while a check runs. The check runs in its own session (so that a
timeout kills everything it started), so before, SIGTERM's default action ended emrops alone
and left the check running as an orphan. Now the check's process group is killed, the run
exits 130 and can be resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.checklist.conftest import write
from tests.sockets.restartable import alive


def test_sigterm_kills_the_running_check(tmp_path: Path) -> None:
    pidfile = tmp_path / "check.pid"
    path = write(
        tmp_path / "slow.yaml",
        f"""\
        schema: emrops.checklist/1
        id: slow
        title: Slow
        version: 1
        sections:
          - id: s
            title: S
            items:
              - id: waits
                title: Waits
                instructions: a long check
                check: {{run: "sh -c 'echo $$ > {pidfile}; exec sleep 300'", timeout: 10m}}
        """,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env.update(EMROPS_STATE_DIR=str(tmp_path / "state"), CI="true")
    proc = subprocess.Popen(
        [sys.executable, "-m", "emrops", "checklist", "run", str(path), "--non-interactive"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    check_pid = 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not check_pid:
            time.sleep(0.1)
            text = pidfile.read_text().strip() if pidfile.exists() else ""
            check_pid = int(text) if text else 0
        assert check_pid, "the check did not start"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and alive(check_pid):
        time.sleep(0.1)
    running = alive(check_pid)
    if running:
        os.kill(check_pid, signal.SIGKILL)
    # before: emrops died at once and `sleep 300` ran on as an orphan
    assert not running
