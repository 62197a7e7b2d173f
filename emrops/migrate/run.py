"""``migrate-db run``: plan, create, copy (with the pinned backup alongside), build, verify.
How a run starts (fresh or resumed) is in start.py; what ``status`` reads, in status.py.

Order of work: an offline run reads the source in place, read-only, guarded against writes
(guard.py); an online run installs change capture and reads a snapshot. The plan is built from
what is read, tables are created bare, data is copied (one transaction per table, journaled)
while the pinned pre-migration backup is taken, then primary keys, unique and CHECK
constraints, indexes, identities, foreign keys (NOT VALID, then VALIDATE), ANALYZE and views.
``--resume`` reuses the journaled plan (and an unchanged source, or the snapshot) and skips
every table and object already done.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emrops.errors import UsageError
from emrops.migrate import journal, prebackup, srchash
from emrops.migrate.build import build_objects
from emrops.migrate.copy import RejectWriter, TableResult, copy_tables
from emrops.migrate.start import fresh, remove_run, resume, settle_backup, source_path
from emrops.migrate.status import owner
from emrops.migrate.verify import VerifyResult, verify


@dataclass
class RunOptions:
    source: str
    target: str
    state_dir: Path
    jobs: int = 0  # 0 = number of cores
    resume: bool = False
    cast: Path | None = None
    on_error: str = "abort"  # abort | reject
    verify: bool = True
    online: bool = False  # capture changes in the source and replay them (then `cutover`)
    reject_file: Path | None = None
    backup_store: str | None = None  # where the pinned pre-migration backup goes (None: skip)
    settings: Any = None  # for stores that need credentials (Azure)


@dataclass
class RunResult:
    run_id: str
    # online runs: the snapshot everything read, removed once the run completed and the pinned
    # backup holds the same data; None for offline runs, which read the source in place
    snapshot: str | None
    tables: list[dict[str, Any]]
    rows: int
    rejected: int
    reject_file: str | None
    failed_objects: list[str]
    verify: VerifyResult | None
    seconds: float
    resumed: bool
    backup_id: str | None = None
    online: dict[str, int] | None = None  # change-capture position and rows replayed
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.rejected
            and not self.failed_objects
            and (self.verify is None or self.verify.ok)
        )


@dataclass
class Hooks:
    """Callbacks the CLI supplies for progress (the core never prints)."""

    phase: Callable[[str], None] = lambda _name: None
    rows: Callable[[str, int, int], None] | None = None
    tables: Callable[[list[tuple[str, int]]], None] = lambda _t: None


def run_migration(opts: RunOptions, hooks: Hooks | None = None) -> RunResult:
    """Migrate; raises EmropsError for a refused start or an aborted copy (nothing is lost: the
    source is read-only and the target keeps a journal for --resume or rollback)."""
    hooks = hooks or Hooks()
    started = time.monotonic()
    timings: dict[str, float] = {}
    mark = [started]
    user_phase = hooks.phase

    def phase(name: str) -> None:  # time each phase for the result
        now = time.monotonic()
        if timings or name != "planning":
            timings[phase.current] = round(now - mark[0], 3)  # type: ignore[attr-defined]
        mark[0] = now
        phase.current = name  # type: ignore[attr-defined]
        user_phase(name)

    phase.current = "start"  # type: ignore[attr-defined]
    src_path = source_path(opts.source)
    if opts.on_error not in ("abort", "reject"):
        raise UsageError(f"--on-error must be abort or reject, not {opts.on_error!r}")
    jobs = opts.jobs or os.cpu_count() or 2
    with journal.connect(opts.target, autocommit=True) as conn:
        entries = journal.read(conn)
    # the child process hashing the source for verification starts now, so that its
    # interpreter starts up while the source is planned
    hashing = srchash.Hashing() if opts.verify and not opts.online else None
    try:
        with contextlib.ExitStack() as stack:
            return _run(
                opts, hooks, phase, entries, jobs, src_path, hashing, timings, started, stack
            )
    finally:
        if hashing is not None:
            hashing.close()


def _run(
    opts: RunOptions,
    hooks: Hooks,
    timed_phase: Callable[[str], None],
    entries: dict[str, journal.Entry],
    jobs: int,
    src_path: Path,
    hashing: srchash.Hashing | None,
    timings: dict[str, float],
    started: float,
    stack: contextlib.ExitStack,
) -> RunResult:
    journaled = [False]  # once the journal exists, each step is written there too

    def phase(name: str) -> None:
        timed_phase(name)
        if journaled[0]:
            with journal.connect(opts.target, autocommit=True) as conn:
                journal.set_detail(conn, "run", "step", name)

    run_entry = entries.get("run")
    start = (
        resume(opts, run_entry, stack, phase)
        if opts.resume
        else fresh(opts, run_entry, src_path, stack, phase)
    )
    plan, snap, run_id, guard = start.plan, start.snap, start.run_id, start.guard
    pending, backup_id = start.pending, start.backup_id
    # the journal names this process and the step it is in, so `status` can tell a run in
    # progress from one that was killed (and where it died)
    with journal.connect(opts.target, autocommit=True) as conn:
        journal.set_detail(conn, "run", "owner", owner())
    journaled[0] = True
    reject_path = opts.reject_file or (opts.state_dir / "migrate" / run_id / "rejects.jsonl")
    rejects = RejectWriter(reject_path) if opts.on_error == "reject" else None
    with journal.connect(opts.target, autocommit=True) as conn:
        entries = journal.read(conn)
    todo = [
        t
        for t in plan.tables
        if entries.get(f"table:{t.target}", None) is None
        or entries[f"table:{t.target}"].state != "copied"
    ]
    hooks.tables([(t.target, t.rows) for t in plan.tables])
    verifying = opts.verify and not opts.online  # online: the source keeps changing
    # The source side of verification is hashed from the snapshot (what the copy reads: it
    # never changes) while the copy and the builds run, in a separate process so that its
    # Python work does not hold the GIL the copy threads need.
    if hashing is not None and not verifying:
        hashing.close()
        hashing = None
    if hashing is not None:
        hashing.start(snap, plan.tables)
    phase("copying")
    stop = threading.Event()  # a failed backup stops the copy at once
    if pending is not None:
        pending.add_done_callback(lambda f: stop.set() if f.exception() else None)
    try:
        results: list[TableResult] = copy_tables(
            snap, opts.target, todo, jobs=jobs, rejects=rejects, progress=hooks.rows, stop=stop
        )
    except BaseException:
        if pending is None or not (pending.done() and pending.exception()):
            if pending is not None:  # the backup is still worth keeping for --resume
                with contextlib.suppress(Exception):
                    settle_backup(pending, opts.target)
            raise
    if pending is not None:
        try:
            backup_id = settle_backup(pending, opts.target)
        except BaseException:
            # no pre-migration backup, no migration: remove what the run created
            remove_run(opts, run_id, src_path)
            raise
        if backup_id and opts.backup_store and guard is not None:
            # a rerun on the same unchanged source reuses it (prebackup.py)
            prebackup.remember(
                opts.state_dir, src_path, opts.backup_store, backup_id, guard.fingerprint
            )
    phase("building keys, constraints and indexes")
    failed = build_objects(opts.target, plan, jobs)
    replayed = None
    if opts.online and not failed:
        phase("replaying changes made meanwhile")
        with journal.connect(opts.target, autocommit=True) as conn:
            entries = journal.read(conn)
        from emrops.migrate import online

        since = entries["online"].rows if "online" in entries else online.last_seq(snap)
        replayed = online.replay(src_path, opts.target, plan, int(since or 0))
    with journal.connect(opts.target, autocommit=True) as conn:
        entries = journal.read(conn)
    vres = None
    if hashing is not None:
        phase("verifying")
        vres = verify(plan, opts.target, entries, source=snap, jobs=jobs, sums=hashing.get)
        with journal.connect(opts.target, autocommit=True) as conn:
            for target, (_rows, checksum, _rejected) in hashing.get().items():
                journal.set_checksum(conn, f"table:{target}", checksum)
    # the final state only once every step (verification included) is over: a run killed
    # before this point reads as interrupted
    with journal.connect(opts.target, autocommit=True) as conn:
        state = "built-with-errors" if failed else ("online" if opts.online else "done")
        journal.put(conn, "run", "run", state)
    if guard is not None and guard.changed():
        remove_run(opts, run_id, src_path)
        guard.check()  # raises: the source was written to while it was read
    if not failed and backup_id and guard is None and snap.resolve() != src_path.resolve():
        # the pinned backup is the record; the snapshot was only kept for --resume
        snap.unlink(missing_ok=True)
    phase("done")
    by_table = {r.table: r for r in results}
    tables: list[dict[str, Any]] = []
    for t in plan.tables:
        e = entries.get(f"table:{t.target}")
        r = by_table.get(t.target)
        tables.append(
            {
                "table": t.source,
                "target": t.target,
                "rows": e.rows if e else None,
                "rejected": e.rejected if e else 0,
                "seconds": round(r.seconds, 3) if r else None,
                "rows_per_s": int(r.rows / r.seconds) if r and r.seconds > 0 else None,
                "copied_now": r is not None,
            }
        )
    rejected = sum(t["rejected"] or 0 for t in tables)
    return RunResult(
        run_id=run_id,
        snapshot=None if guard is not None else str(snap),
        tables=tables,
        rows=sum(t["rows"] or 0 for t in tables),
        rejected=rejected,
        reject_file=str(reject_path) if rejected else None,
        failed_objects=failed,
        verify=vres,
        seconds=round(time.monotonic() - started, 3),
        phases={k: v for k, v in timings.items() if k != "start"},
        resumed=opts.resume,
        backup_id=backup_id,
        online=({"position": replayed[0], "replayed_rows": replayed[1]} if replayed else None),
        notes=plan.notes + [f"not migrated: {s}" for s in plan.skipped],
    )
