"""Two migrate-db runs on one target at once. Started together, both found no journal and both
tried to create it: one ended in "unexpected UniqueViolation" after taking and pinning a
backup of its own. A `--resume` while the run was still going started a second copy of the
same tables. Now a run holds the target's start lock until it has journaled itself (the
other exits 75), and a resume of a run still alive on this host exits 75."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from emrops.migrate import journal
from tests.migrate.conftest import pg


def _source(path: Path, rows: int) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t (v) VALUES (?)", ((f"row {i}" * 4,) for i in range(rows)))
    conn.commit()
    conn.close()
    return path


def _env(tmp_path: Path, n: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMROPS_")}
    env.update(
        EMROPS_STATE_DIR=str(tmp_path / f"state{n}"),
        EMROPS_BACKUP_STORE=str(tmp_path / f"store{n}"),
        CI="true",
    )
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "emrops", "migrate-db", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )


def test_two_runs_started_together(tmp_path: Path, pg_url: str) -> None:
    source = _source(tmp_path / "s.db", 50_000)
    where = ["--from", f"sqlite:///{source}", "--to", pg_url]
    procs = [_run(["run", *where], _env(tmp_path, n)) for n in (1, 2)]
    outcomes = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in outcomes)
    # before: [0, 1] with "unexpected UniqueViolation" on the loser. Which refusal the loser
    # gets depends on when it starts (the test below pins each one down)
    assert codes[0] == 0 and codes[1] in (1, 75), outcomes
    loser = next(err for code, err in outcomes if code != 0)
    assert "unexpected" not in loser and "Traceback" not in loser, outcomes
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (50_000,)


def test_a_run_while_another_is_starting_then_after_it(tmp_path: Path, pg_url: str) -> None:
    """The same race with its timing fixed: the start lock held (as by a run still starting),
    then released, then a second run once the first has journaled itself."""
    source = _source(tmp_path / "s.db", 1_000)
    where = ["--from", f"sqlite:///{source}", "--to", pg_url]
    with pg(pg_url) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (journal.START_LOCK,))
        blocked = _run(["run", *where], _env(tmp_path, 1))
        _, err = blocked.communicate(timeout=120)
        assert blocked.returncode == 75, err
        assert "another emrops migrate-db run is starting on this target" in err
    first = _run(["run", *where], _env(tmp_path, 1))
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    later = _run(["run", *where], _env(tmp_path, 2))
    _, err = later.communicate(timeout=120)
    assert later.returncode == 1, err
    assert "already holds an emrops migration" in err
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1_000,)


@pytest.mark.parametrize("command", [["run", "--resume"], ["rollback", "--yes"]])
def test_resume_or_rollback_of_a_run_still_going(
    tmp_path: Path, pg_url: str, command: list[str]
) -> None:
    source = _source(tmp_path / "big.db", 600_000)
    where = ["--from", f"sqlite:///{source}", "--to", pg_url]
    env = _env(tmp_path, 1)
    first = _run(["run", *where], env)
    try:
        assert first.stderr is not None
        seen = []
        for line in first.stderr:
            seen.append(line)
            if line.startswith("copying"):
                break
        else:
            pytest.fail(f"the first run stopped before copying: {''.join(seen)}")
        second = subprocess.run(
            [sys.executable, "-m", "emrops", "migrate-db", *command, *where],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        # before: a second copy of the same tables started beside the first, or the
        # rollback dropped them under it
        assert second.returncode == 75, second.stderr
        assert f"still running (pid {first.pid} on this host)" in second.stderr
        first.communicate(timeout=180)  # (drains its stderr)
        assert first.returncode == 0
    finally:
        if first.poll() is None:
            first.kill()
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (600_000,)
