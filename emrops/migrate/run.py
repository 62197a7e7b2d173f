"""``migrate-db run``: plan, create, copy (with the pinned backup alongside), build, verify.

Order of work: an offline run reads the source in place, read-only, guarded against writes
(guard.py); an online run installs change capture and reads a snapshot. The plan is built from
what is read, tables are created bare (start.py), data is copied (one transaction per table,
journaled) while the pinned pre-migration backup is taken, then primary keys, unique and CHECK
constraints, indexes, identities, foreign keys (NOT VALID, then VALIDATE), ANALYZE and views.
``--resume`` reuses the journaled plan (and an unchanged source, or the snapshot) and skips
every table and object already done.

The run is the table :data:`STEPS`: each step is a function of the shared :class:`RunContext`,
announced by its phase name (timed for the result, and journaled as the run's step, so that
``status`` names the step a killed run died in). A new step is a new row.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from emrops import atomic
from emrops.errors import EmropsError, UsageError
from emrops.machine import default_jobs
from emrops.migrate import journal, prebackup, slots, srchash
from emrops.migrate.build import build_objects
from emrops.migrate.copy import RejectWriter, TableResult, copy_tables
from emrops.migrate.plan import TablePlan
from emrops.migrate.start import Start, fresh, remove_run, resume, settle_backup, source_path
from emrops.migrate.status import owner, refuse_if_running
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
    clock = _Clock(hooks.phase)
    src_path = source_path(opts.source)
    if opts.on_error not in ("abort", "reject"):
        raise UsageError(f"--on-error must be abort or reject, not {opts.on_error!r}")
    if opts.reject_file is not None:  # refused before anything starts, not at the first row
        atomic.check_file_path(opts.reject_file, "--reject-file")
    # the run keeps its snapshot, rejects and backup index there: found unwritable after the
    # copy, it would leave a half-built target behind an "unexpected" error
    atomic.require_writable_folder(
        opts.state_dir / "migrate",
        "the state folder",
        "set EMROPS_STATE_DIR (or state_dir in emrops.toml) to a folder this user can write",
    )
    if opts.backup_store:
        prebackup.preload()  # its imports overlap the planning's scans
    # held until the run has journaled itself (see journal.lock_start): the connection the
    # start checks are made on
    starting = journal.connect(opts.target, autocommit=True)
    try:
        journal.lock_start(starting)
        journal.require_utf8(starting)
        journal.require_writable(starting)
        entries = journal.read(starting)
        jobs, jobs_note = slots.fit_jobs(starting, opts.jobs or default_jobs())
    except BaseException:
        starting.close()
        raise
    # the child process hashing the source for verification starts now, so that its
    # interpreter starts up while the source is planned
    hashing = None
    try:
        hashing = srchash.Hashing() if opts.verify and not opts.online else None
        with contextlib.ExitStack() as stack:
            ctx = RunContext(opts, hooks, clock, jobs, src_path, hashing, stack)
            ctx.starting = starting
            ctx.entries = entries
            ctx.notes = [jobs_note] if jobs_note else []
            try:
                for step in STEPS:
                    if step.when(ctx):
                        if step.phase is not None:
                            ctx.announce(step.phase)
                        try:
                            step.do(ctx)
                        except psycopg.Error as exc:
                            gone = journal.lost(exc, clock.current)
                            if gone is None:
                                raise
                            raise gone from None
            except BaseException as exc:
                if ctx.journaled:
                    _journal_error(opts.target, exc)
                raise
            return ctx.result
    finally:
        starting.close()  # (already closed by _claim once the run was journaled)
        if hashing is not None:
            hashing.close()


def _journal_error(target: str, exc: BaseException) -> None:
    """Note in the journal why this run stopped, so that `status` tells a run that failed (and
    how) from one that was killed. Best effort: the error may be that the target is gone."""
    if isinstance(exc, KeyboardInterrupt):  # the CLI raises SIGTERM as one too
        text = (
            "stopped by the user (Ctrl-C)"
            if type(exc) is KeyboardInterrupt
            else "stopped by SIGTERM"
        )
    elif isinstance(exc, EmropsError):
        text = exc.message
    else:
        text = f"{type(exc).__name__}: {exc}"
    with contextlib.suppress(Exception), journal.connect(target, autocommit=True) as conn:
        journal.set_detail(conn, "run", "error", text[:2000])


@dataclass
class _Clock:
    """Times each phase for the result, and passes its name on to the CLI's hook."""

    hook: Callable[[str], None]
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per finished phase
    current: str = "start"
    mark: float = 0.0

    def __post_init__(self) -> None:
        self.mark = self.started

    def phase(self, name: str) -> None:
        now = time.monotonic()
        if self.timings or name != "planning":
            self.timings[self.current] = round(now - self.mark, 3)
        self.mark = now
        self.current = name
        self.hook(name)


@dataclass
class RunContext:
    """What the steps share: the options, and what each step leaves for the next ones."""

    opts: RunOptions
    hooks: Hooks
    clock: _Clock
    jobs: int
    src_path: Path
    hashing: srchash.Hashing | None  # None: no verification (or online: the source moves)
    stack: contextlib.ExitStack  # holds the source guard of an offline run
    entries: dict[str, journal.Entry] = field(default_factory=dict)  # the journal, last read
    journaled: bool = False  # once the journal exists, each step is written there too
    start: Start = field(init=False)  # the plan, what the copy reads, the run id, the backup
    reject_path: Path = field(init=False)
    rejects: RejectWriter | None = None
    todo: list[TablePlan] = field(default_factory=list)  # tables not copied yet
    results: list[TableResult] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # objects that could not be built
    notes: list[str] = field(default_factory=list)  # for the result (e.g. fewer jobs)
    replayed: tuple[int, int] | None = None  # online: change-capture position, rows replayed
    vres: VerifyResult | None = None
    result: RunResult = field(init=False)
    starting: psycopg.Connection | None = None  # holds the start lock until the run is journaled

    def announce(self, name: str) -> None:
        """Enter the phase ``name``: timed, shown, and journaled as the run's step."""
        self.clock.phase(name)
        if self.journaled:
            with journal.connect(self.opts.target, autocommit=True) as conn:
                journal.set_detail(conn, "run", "step", name)

    def reread(self) -> None:
        with journal.connect(self.opts.target, autocommit=True) as conn:
            self.entries = journal.read(conn)


def _begin(ctx: RunContext) -> None:
    """Start fresh or resume (start.py announces its own phases: planning, snapshot ...)."""
    run_entry = ctx.entries.get("run")
    if ctx.opts.resume and run_entry is not None:
        refuse_if_running(run_entry.detail, "a resume")
    if ctx.opts.resume:
        ctx.start = resume(ctx.opts, run_entry, ctx.stack, ctx.announce, ctx.src_path)
    else:
        ctx.start = fresh(ctx.opts, run_entry, ctx.src_path, ctx.stack, ctx.announce)


def _claim(ctx: RunContext) -> None:
    """The journal names this process and the step it is in, so `status` can tell a run in
    progress from one that was killed (and where it died)."""
    with journal.connect(ctx.opts.target, autocommit=True) as conn:
        journal.set_detail(conn, "run", "owner", owner())
        journal.set_detail(conn, "run", "error", None)  # a resumed run's earlier failure
    ctx.journaled = True
    if ctx.starting is not None:  # the journal names this run now: the start lock goes
        ctx.starting.close()
        ctx.starting = None


def _prepare_copy(ctx: RunContext) -> None:
    """The reject file, the tables still to copy, and the source side of verification."""
    opts, plan = ctx.opts, ctx.start.plan
    ctx.reject_path = opts.reject_file or (
        opts.state_dir / "migrate" / ctx.start.run_id / "rejects.jsonl"
    )
    ctx.rejects = RejectWriter(ctx.reject_path) if opts.on_error == "reject" else None
    ctx.reread()
    done = {t.target for t in plan.tables if _copied(ctx.entries.get(f"table:{t.target}"))}
    ctx.todo = [t for t in plan.tables if t.target not in done]
    ctx.hooks.tables([(t.target, t.rows) for t in plan.tables])
    # The source side of verification is hashed from the snapshot (what the copy reads: it
    # never changes) while the copy and the builds run, in a separate process so that its
    # Python work does not hold the GIL the copy threads need. Online: the source keeps
    # changing, so there is none.
    if ctx.hashing is not None and (not opts.verify or opts.online):
        ctx.hashing.close()
        ctx.hashing = None
    if ctx.hashing is not None:
        ctx.hashing.start(ctx.start.snap, plan.tables)


def _copied(entry: journal.Entry | None) -> bool:
    return entry is not None and entry.state == "copied"


def _copy(ctx: RunContext) -> None:
    """Copy every table not copied yet; a failed backup stops the copy at once."""
    pending = ctx.start.pending
    stop = threading.Event()
    if pending is not None:
        pending.add_done_callback(lambda f: stop.set() if f.exception() else None)
    try:
        ctx.results = copy_tables(
            ctx.start.snap,
            ctx.opts.target,
            ctx.todo,
            jobs=ctx.jobs,
            rejects=ctx.rejects,
            progress=ctx.hooks.rows,
            stop=stop,
        )
    except BaseException:
        if pending is None or not (pending.done() and pending.exception()):
            if pending is not None:  # the backup is still worth keeping for --resume
                with contextlib.suppress(Exception):
                    settle_backup(pending, ctx.opts.target)
            raise
        # the backup failed (and stopped the copy): _settle reports the backup's error


def _settle(ctx: RunContext) -> None:
    """Wait for the pinned backup taken alongside the copy, and journal it."""
    opts, start = ctx.opts, ctx.start
    assert start.pending is not None
    try:
        start.backup_id = settle_backup(start.pending, opts.target)
    except BaseException:
        # no pre-migration backup, no migration: remove what the run created
        remove_run(opts, start.run_id, ctx.src_path)
        raise


def _build(ctx: RunContext) -> None:
    ctx.failed = build_objects(ctx.opts.target, ctx.start.plan, ctx.jobs)


def _replay(ctx: RunContext) -> None:
    """Online: apply the changes the source captured while it was copied."""
    from emrops.migrate import online

    ctx.reread()
    entries = ctx.entries
    since = entries["online"].rows if "online" in entries else online.last_seq(ctx.start.snap)
    ctx.replayed = online.replay(ctx.src_path, ctx.opts.target, ctx.start.plan, int(since or 0))


def _verify(ctx: RunContext) -> None:
    """Compare the target with the source hashes computed alongside the copy."""
    assert ctx.hashing is not None
    ctx.vres = verify(
        ctx.start.plan,
        ctx.opts.target,
        ctx.entries,
        source=ctx.start.snap,
        jobs=ctx.jobs,
        sums=ctx.hashing.get,
    )
    with journal.connect(ctx.opts.target, autocommit=True) as conn:
        for target, (_rows, checksum, _rejected) in ctx.hashing.get().items():
            journal.set_checksum(conn, f"table:{target}", checksum)


def _finish(ctx: RunContext) -> None:
    """The final state, only once every step (verification included) is over: a run killed
    before this point reads as interrupted. A source written to meanwhile fails the run."""
    opts, start = ctx.opts, ctx.start
    with journal.connect(opts.target, autocommit=True) as conn:
        state = "built-with-errors" if ctx.failed else ("online" if opts.online else "done")
        journal.put(conn, "run", "run", state)
    guard, snap = start.guard, start.snap
    if guard is not None and guard.changed():
        remove_run(opts, start.run_id, ctx.src_path)
        guard.check()  # raises: the source was written to while it was read
    if (
        not ctx.failed
        and start.backup_id
        and guard is None
        and snap.resolve() != ctx.src_path.resolve()
    ):
        # the pinned backup is the record; the snapshot was only kept for --resume
        snap.unlink(missing_ok=True)


def _report(ctx: RunContext) -> None:
    """The result: per table, what the journal counted and what this run copied."""
    by_table = {r.table: r for r in ctx.results}
    tables = [
        _table_row(t, ctx.entries.get(f"table:{t.target}"), by_table.get(t.target))
        for t in ctx.start.plan.tables
    ]
    rejected = sum(t["rejected"] or 0 for t in tables)
    start, clock, plan = ctx.start, ctx.clock, ctx.start.plan
    ctx.result = RunResult(
        run_id=start.run_id,
        snapshot=None if start.guard is not None else str(start.snap),
        tables=tables,
        rows=sum(t["rows"] or 0 for t in tables),
        rejected=rejected,
        reject_file=str(ctx.reject_path) if rejected else None,
        failed_objects=ctx.failed,
        verify=ctx.vres,
        seconds=round(time.monotonic() - clock.started, 3),
        phases={k: v for k, v in clock.timings.items() if k != "start"},
        resumed=ctx.opts.resume,
        backup_id=start.backup_id,
        online=(
            {"position": ctx.replayed[0], "replayed_rows": ctx.replayed[1]}
            if ctx.replayed
            else None
        ),
        notes=ctx.notes + plan.notes + [f"not migrated: {s}" for s in plan.skipped],
    )


def _table_row(t: TablePlan, e: journal.Entry | None, r: TableResult | None) -> dict[str, Any]:
    return {
        "table": t.source,
        "target": t.target,
        "rows": e.rows if e else None,
        "rejected": e.rejected if e else 0,
        "seconds": round(r.seconds, 3) if r else None,
        "rows_per_s": int(r.rows / r.seconds) if r and r.seconds > 0 else None,
        "copied_now": r is not None,
    }


def _always(_ctx: RunContext) -> bool:
    return True


@dataclass(frozen=True)
class Step:
    """One row of the run: ``do`` runs when ``when`` holds, after ``phase`` (if any) is
    announced. Steps without a phase belong to the phase before them."""

    do: Callable[[RunContext], None]
    phase: str | None = None
    when: Callable[[RunContext], bool] = _always


STEPS: tuple[Step, ...] = (
    Step(_begin),  # announces resuming, or change capture, snapshot and planning
    Step(_claim),
    Step(_prepare_copy),
    Step(_copy, "copying"),
    Step(_settle, when=lambda c: c.start.pending is not None),
    Step(_build, "building keys, constraints and indexes"),
    Step(
        _replay,
        "replaying changes made meanwhile",
        when=lambda c: c.opts.online and not c.failed,
    ),
    Step(lambda c: c.reread()),
    Step(_verify, "verifying", when=lambda c: c.hashing is not None),
    Step(_finish),
    Step(_report, "done"),
)
