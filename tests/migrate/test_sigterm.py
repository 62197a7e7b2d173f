"""SIGTERM during `migrate-db run` (CI cancelling the job): the run stops like Ctrl-C, says
so in its journal, and resumes to a verified copy."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.migrate.conftest import pg


def test_sigterm_during_the_copy_is_recorded_and_resumable(tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "big.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n REAL)")
    conn.executemany(
        "INSERT INTO t (v, n) VALUES (?, ?)", ((f"row {i}" * 5, i / 7) for i in range(400_000))
    )
    conn.commit()
    conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env.update(EMROPS_STATE_DIR=str(tmp_path / "state"), CI="true")
    args = [sys.executable, "-m", "emrops", "migrate-db"]
    where = ["--from", f"sqlite:///{source}", "--to", pg_url]
    proc = subprocess.Popen(
        [*args, "run", *where],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("copying"):
                proc.send_signal(signal.SIGTERM)
                break
        rest = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(seen) + rest
    assert "terminated (SIGTERM)" in rest
    status = subprocess.run(
        [*args, "status", "--to", pg_url], capture_output=True, text=True, env=env, timeout=60
    )
    # before: SIGTERM's default action killed the run, and status could only guess
    assert "stopped by SIGTERM" in status.stdout + status.stderr
    resumed = subprocess.run(
        [*args, "run", "--resume", *where], capture_output=True, text=True, env=env, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    with pg(pg_url) as target:
        assert target.execute("SELECT count(*) FROM t").fetchone() == (400_000,)
