"""Helpers of the session 11 PostgreSQL failure-injection campaign: stand-ins for pg_dump,
pg_restore and psql put first on PATH (the boundary where emrops finds them, shutil.which),
that log their call, pause at a chosen point (a marker file says they are there) or misbehave,
then run the real tool; and the real CLI in a subprocess of its own process group."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from tests.conftest import PG_HOST

# Each stand-in, when the variable C11_PAUSE_<tool> is a part of its arguments, touches
# $C11_MARK.<tool> and sleeps $C11_SLEEP seconds before running the real tool. pg_restore with
# C11_MID_pg_restore pauses after writing $C11_BYTES bytes of its output instead.
_PAUSE = """#!/bin/bash
if [ -n "$C11_MID_{tool}" ] && [[ "$*" == *"$C11_MID_{tool}"* ]]; then
  {real} "$@" | {{ head -c "$C11_BYTES"; touch "$C11_MARK.{tool}"; sleep "$C11_SLEEP"; cat; }}
  code=${{PIPESTATUS[0]}}
  # killed by a signal: die of it too, as the real tool (emrops's child) would have
  if [ "$code" -gt 128 ]; then trap - TERM INT; kill -$((code - 128)) $$; fi
  exit $code
fi
if [ -n "$C11_PAUSE_{tool}" ] && [[ "$*" == *"$C11_PAUSE_{tool}"* ]]; then
  touch "$C11_MARK.{tool}"; sleep "$C11_SLEEP"
fi
exec {real} "$@"
"""
# psql that runs the real one, then touches $C11_MARK.psql-done and sleeps before exiting:
# the restore's transaction has ended, emrops has not yet seen psql exit
_PSQL_AFTER = """#!/bin/bash
{real} "$@"
code=$?
touch "$C11_MARK.psql-done"; sleep "$C11_SLEEP"
exit $code
"""


def stand_ins(folder: Path, *, psql_after: bool = False) -> dict[str, str]:
    """Write the stand-ins into ``folder``; the environment that puts them first on PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    for tool in ("pg_dump", "pg_restore", "psql"):
        body = _PSQL_AFTER if tool == "psql" and psql_after else _PAUSE
        path = folder / tool
        path.write_text(body.format(tool=tool, real=shutil.which(tool)))
        path.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}", "C11_MARK": str(folder / "mark")}


def fake_tool(folder: Path, name: str, body: str) -> dict[str, str]:
    """A ``name`` on PATH whose script is ``body`` (bash); the environment to use it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/bash\n" + body + "\n")
    path.chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m emrops ARGS`` in a process group of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "emrops", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        start_new_session=True,
    )


def wait_for(marker: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"emrops ended first: {proc.returncode} {proc.stderr.read()}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"{marker} never appeared"
        time.sleep(0.02)


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int | None, str]:
    """Exit code and stderr, or (None, ...) when it did not end in time (then killed)."""
    try:
        _out, err = proc.communicate(timeout=timeout)
        return proc.returncode, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        _out, err = proc.communicate()
        return None, err


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every descendant of ``pid``."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout
    found = []
    for line in out.splitlines():
        child, args = line.strip().split(" ", 1)
        found.append((int(child), args))
        found += children(int(child))
    return found


def url(name: str) -> str:
    return f"postgresql+psycopg://postgres@{PG_HOST}/{name}"


def rows(name: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(f"postgresql://postgres@{PG_HOST}/{name}", connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '5s'")  # a test never waits for ever behind a restore
        cursor = conn.execute(query)
        return cursor.fetchall() if cursor.description else []


def flag(name: str) -> object:
    """The maintenance row's value (None when there is no row)."""
    found = rows(name, "SELECT value FROM emrops_control WHERE key = 'maintenance'")
    return found[0][0] if found else None
