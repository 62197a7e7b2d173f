"""What a run left in the target's journal: its status (running, failed or interrupted in a
named step, or finished), the process that owns it, and the journaled plan that ``verify``
checks again."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import psycopg

from emrops.errors import Busy, EmropsError
from emrops.machine import default_jobs
from emrops.migrate import journal, slots
from emrops.migrate.plan import Plan
from emrops.migrate.planner import open_source
from emrops.migrate.start import source_path
from emrops.migrate.verify import VerifyResult, verify

# journaled run states after which nothing more happens without a new command
FINAL_STATES = ("done", "built-with-errors", "online", "cut-over")


def status(target: str) -> dict[str, Any]:
    """What the journal in ``target`` says: the run's state and every table and object."""
    with journal.connect(target, autocommit=True) as conn:
        entries = journal.read(conn)
    run = entries.get("run")
    if run is None:
        return {"state": "none", "tables": [], "objects": {}, "failed": []}
    state, step = run.state, run.detail.get("step")
    error = run.detail.get("error")
    if state not in FINAL_STATES:
        # unfinished: the run is still going, stopped on an error it journaled, or was killed;
        # its owner and the error tell which
        if alive(run.detail.get("owner")):
            state = "running"
        else:
            state = "failed" if error else "interrupted"
    tables = [
        {"table": e.item.split(":", 1)[1], "state": e.state, "rows": e.rows, "rejected": e.rejected}
        for e in entries.values()
        if e.kind == "table"
    ]
    objects = [e for e in entries.values() if e.kind in ("object", "view")]
    return {
        "state": state,
        "journal_state": run.state,
        "step": step if state in ("running", "interrupted", "failed") else None,
        "error": error if state == "failed" else None,
        "run_id": run.detail.get("run_id"),
        "started_at": run.detail.get("started_at"),
        "snapshot": run.detail.get("snapshot"),
        "source": run.detail.get("source"),
        "tables": tables,
        "objects": {
            "done": sum(e.state == "done" for e in objects),
            "failed": sum(e.state == "failed" for e in objects),
        },
        "failed": [
            f"{e.item}: {e.detail.get('error', '')}" for e in objects if e.state == "failed"
        ],
    }


def owner() -> dict[str, Any]:
    """This process, as the journal names a run's owner (see :func:`alive`)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": _process_start(os.getpid())}


def refuse_if_running(run_detail: dict[str, Any] | None, doing: str) -> None:
    """Raise Busy when the run that journaled ``run_detail`` is still alive on this host: a
    resume would copy the same tables beside it, a rollback drop them under it. (A run owned
    by another host cannot be checked from here and is not refused.)"""
    held = (run_detail or {}).get("owner")
    if held and held.get("host") == socket.gethostname() and alive(held):
        raise Busy(
            f"the migration is still running (pid {held.get('pid')} on this host): "
            f"{doing} would work on the same tables",
            hint="wait for it to finish, or stop it first; `emrops migrate-db status` shows "
            "its step",
        )


def alive(owner: dict[str, Any] | None) -> bool:
    """Whether the process that journaled ``owner`` still runs (on this host; a run owned by
    another host is taken to be alive, as it cannot be checked from here)."""
    if not owner:
        return False
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if owner.get("since") is not None and _process_start(pid) != owner["since"]:
        return False  # the pid was reused by another process since
    return pid != os.getpid()


def _process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from /proc; None elsewhere), to
    tell it from a later process given the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: count from its end
    return int(stat.rsplit(")", 1)[1].split()[19])


def load_plan(target: str) -> tuple[Plan, dict[str, journal.Entry]]:
    """The plan the run journaled in ``target``, and the journal's entries."""
    with journal.connect(target, autocommit=True) as conn:
        entries = journal.read(conn)
    run = entries.get("run")
    if run is None:
        raise EmropsError(
            "the target has no emrops migration journal (nothing was migrated there)",
            hint="run `emrops migrate-db run --from ... --to ...` first",
        )
    return Plan.from_dict(run.detail["plan"]), entries


def verify_target(source: str, target: str, jobs: int = 0) -> VerifyResult:
    """Full verification of ``target`` against the source as it is now."""
    plan, entries = load_plan(target)
    path = source_path(source)
    open_source(path).close()
    with journal.connect(target, autocommit=True) as conn:
        journal.require_utf8(conn)
        jobs, _note = slots.fit_jobs(conn, jobs or default_jobs(), "verification")
    try:
        return verify(plan, target, entries, source=path, jobs=jobs)
    except psycopg.Error as exc:
        gone = journal.lost(exc, "verifying")
        if gone is None:
            raise
        raise gone from None
