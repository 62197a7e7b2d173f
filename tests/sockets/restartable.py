"""Start or restart a real ``emrops sim serve`` process on a fixed port (used as --restart-cmd).

    python restartable.py start|restart|stop STATE_DIR PORT DB_URL

The server runs in its own session (it outlives this script); its pid is kept in
STATE_DIR/server.pid. ``restart`` stops it with SIGTERM (graceful: WebSockets get the
``reconnect`` frame and close 1012), waits for it to exit, starts a new one on the same port and
returns once ``/health`` answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def stop(state: Path) -> None:
    pidfile = state / "server.pid"
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    pidfile.unlink()


def start(state: Path, port: str, db: str) -> None:
    env = {**os.environ, "EMROPS_SIM_VITALS_INTERVAL": "0.5"}
    with (state / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "emrops", "sim", "serve", "--port", port, "--db", db],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    (state / "server.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on port {port} did not come back")


if __name__ == "__main__":
    mode, state_dir, port_arg, db_url = sys.argv[1:5]
    state_path = Path(state_dir)
    if mode in ("stop", "restart"):
        stop(state_path)
    if mode in ("start", "restart"):
        start(state_path, port_arg, db_url)
