"""``migrate-db run``: plan, create, copy (with the pinned backup alongside), build, verify;
and ``status``.

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
import hashlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from emrops.backup.snapshot import Snapshot, use_sqlite_snapshot
from emrops.db.urls import simple_sqlite_path, sqlite_db_url
from emrops.errors import CheckFailed, EmropsError, UsageError
from emrops.logs import iso_utc, new_run_id
from emrops.machine import default_jobs
from emrops.migrate import journal, prebackup, srchash
from emrops.migrate.build import build_objects
from emrops.migrate.copy import RejectWriter, TableResult, copy_tables
from emrops.migrate.guard import SourceGuard, check_unchanged
from emrops.migrate.plan import Plan, build_plan, load_casts, open_source
from emrops.migrate.reflect import quote, reflect
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


def source_path(url: str) -> Path:
    simple = simple_sqlite_path(url)
    if simple is not None:
        return simple
    from emrops.db.engine import parse_db_url

    db = parse_db_url(url)
    if db.engine_name != "sqlite" or db.sqlite_path is None:
        raise UsageError(
            f"--from must be an SQLite file URL, not {db.masked()}",
            hint="use sqlite:///path/to/app.db",
        )
    return db.sqlite_path


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(path: Path, dest: Path) -> None:
    """A consistent copy of the SQLite file at ``path`` (read-only): the backup's reader, which
    reads the pages of one read transaction straight from the file and its WAL, or the backup
    API when it cannot (see backup/snapshot.py)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")

    def write(snap: Snapshot) -> None:
        assert snap.stream is not None
        with tmp.open("wb") as out:
            shutil.copyfileobj(snap.stream, out, 1 << 22)

    use_sqlite_snapshot(path, dest.parent, write)
    os.replace(tmp, dest)


def existing_tables(conn: psycopg.Connection, names: list[str]) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_name = ANY(%s)",
        (names,),
    ).fetchall()
    return sorted(r[0] for r in rows)


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
    jobs = opts.jobs or default_jobs()
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


@dataclass
class _Start:
    """What a run starts from: fresh (:func:`_fresh`) or resumed (:func:`_resume`)."""

    plan: Plan
    snap: Path  # what the copy reads: the source itself (offline) or a snapshot (online)
    run_id: str
    guard: SourceGuard | None  # offline: fails the run if the source is written meanwhile
    pending: Future[str | None] | None  # the pinned backup being taken (fresh runs)
    backup_id: str | None  # the journaled backup (resumed runs)


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
        _resume(opts, run_entry, stack, phase)
        if opts.resume
        else _fresh(opts, run_entry, src_path, stack, phase)
    )
    plan, snap, run_id, guard = start.plan, start.snap, start.run_id, start.guard
    pending, backup_id = start.pending, start.backup_id
    # the journal names this process and the step it is in, so `status` can tell a run in
    # progress from one that was killed (and where it died)
    with journal.connect(opts.target, autocommit=True) as conn:
        journal.set_detail(
            conn,
            "run",
            "owner",
            {"pid": os.getpid(), "host": _host(), "since": _process_start(os.getpid())},
        )
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
                    _settle_backup(pending, opts.target)
            raise
    if pending is not None:
        try:
            backup_id = _settle_backup(pending, opts.target)
        except BaseException:
            # no pre-migration backup, no migration: remove what the run created
            _remove_run(opts, run_id, src_path)
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
        _remove_run(opts, run_id, src_path)
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


def _refuse(plan: Plan, opts: RunOptions) -> None:
    """Refuse to start on unresolved anomalies (with abort) or a target holding the tables."""
    if plan.anomalies and opts.on_error == "abort":
        a = plan.anomalies[0]
        raise CheckFailed(
            f"{len(plan.anomalies)} column(s) hold values that do not fit the plan; first: "
            f"table {a.table}, row {a.key}, column {a.column}: {a.message} (e.g. "
            f"{a.value!r}, {a.count} value(s))",
            hint="see `emrops migrate-db plan`; add cast rules (--cast) or rerun with "
            "--on-error reject",
        )
    with journal.connect(opts.target, autocommit=True) as conn:
        existing = existing_tables(conn, [t.target for t in plan.tables] + [journal.JOURNAL])
    if existing:
        raise EmropsError(
            f"the target already has tables: {', '.join(existing[:5])}"
            + (" ..." if len(existing) > 5 else ""),
            hint="use an empty database, continue a run with --resume, or remove an "
            "earlier run with `emrops migrate-db rollback`",
        )


def _remove_run(opts: RunOptions, run_id: str, src_path: Path) -> None:
    """Remove what a run created: its tables and journal in the target, change capture in
    the source, its folder in the state directory (a snapshot, if one was taken)."""
    from emrops.migrate.rollback import execute_rollback, plan_rollback

    execute_rollback(opts.target, plan_rollback(opts.target, src_path))
    shutil.rmtree(opts.state_dir / "migrate" / run_id, ignore_errors=True)


def _discard(pending: Future, run_dir: Path, opts: RunOptions, reused: bool = False) -> None:
    """A refused run leaves nothing behind: its backup (unless reused from an earlier run,
    which stays for the next) and snapshot are removed."""
    with contextlib.suppress(Exception):
        backup_id = pending.result()
        if backup_id and opts.backup_store and not reused:
            from emrops.backup.stores import open_store

            open_store(opts.backup_store, opts.settings).delete_backup(backup_id)
    shutil.rmtree(run_dir, ignore_errors=True)


def _settle_backup(pending: Future, target: str) -> str | None:
    """Wait for the pinned backup (re-raising its error) and journal its id."""
    backup_id = pending.result()
    if backup_id:
        with journal.connect(target, autocommit=True) as conn:
            journal.set_detail(conn, "run", "backup_id", backup_id)
    return backup_id  # type: ignore[no-any-return]


def _backup(snap: Path, run_id: str, opts: RunOptions) -> str | None:
    """A pinned `backup run` of the snapshot (the source as copied), so rotation cannot remove
    it while the migration is not finished. Returns its backup id."""
    if not opts.backup_store:
        return None
    from emrops.backup.run import RunOptions as BackupOptions
    from emrops.backup.run import run_backup
    from emrops.backup.stores import open_store

    store = open_store(opts.backup_store, opts.settings)
    label = f"pre-migration {run_id} of {_shown(opts.source)}"
    # zstd level 1: half the CPU of the default level 3 for a file 3% larger (measured on the
    # benchmark database), and this backup runs while the snapshot is profiled on both cores
    manifest = run_backup(
        store, BackupOptions(db_url=sqlite_db_url(snap), label=label, pin=True, level=1)
    )
    return str(manifest.id)


def _shown(source: str) -> str:
    """The source URL as reports show it (an SQLite URL holds no secret)."""
    path = simple_sqlite_path(source)
    if path is not None:
        return f"sqlite:///{path}"
    from emrops.db.engine import parse_db_url

    return parse_db_url(source).masked()


def _create(
    target: str,
    plan: Plan,
    run_id: str,
    snap: Path,
    opts: RunOptions,
    backup_id: str | None,
    guard: SourceGuard | None,
) -> None:
    """Create the journal and every bare table in one transaction."""
    with journal.connect(target) as conn:
        journal.ensure(conn)
        journal.put(
            conn,
            "run",
            "run",
            "copying",
            detail={
                "run_id": run_id,
                "snapshot": str(snap),  # the source itself when read in place (live_source)
                "live_source": guard is not None,
                "source_fingerprint": guard.fingerprint if guard is not None else None,
                "source": _shown(opts.source),
                "started_at": iso_utc(),
                "on_error": opts.on_error,
                "plan": plan.to_dict(),
                "backup_id": backup_id,
                "backup_store": opts.backup_store,
                "online": opts.online,
                "source_path": str(source_path(opts.source).resolve()),
            },
        )
        created = []
        for ext in plan.extensions:
            row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (ext,)).fetchone()
            if row is None:  # rollback removes only what the run created
                created.append(ext)
                _ddl(conn, "extension", ext, f"CREATE EXTENSION IF NOT EXISTS {quote(ext)}")
        journal.set_detail(conn, "run", "created_extensions", created)
        for t in plan.tables:
            _ddl(conn, "table", t.target, t.create_sql)
            journal.put(conn, f"table:{t.target}", "table", "created")
        conn.commit()


def _ddl(conn: psycopg.Connection, kind: str, name: str, sql: str) -> None:
    """Execute one statement of the table creation; a failure is reported with its SQL and
    PostgreSQL's message (the transaction is rolled back: nothing was created)."""
    try:
        conn.execute(sql)
    except psycopg.Error as exc:
        from emrops.migrate.trial import hint_for, pg_message

        raise SchemaRefused(
            f"PostgreSQL refused to create {kind} {name}: {pg_message(exc)}; SQL: {sql}",
            hint=hint_for(kind) + "; `emrops migrate-db plan` tries every statement first",
        ) from None


class SchemaRefused(CheckFailed):
    """A statement creating the target's tables failed (exit 3, nothing created)."""


def status(target: str) -> dict[str, Any]:
    """What the journal in ``target`` says: the run's state and every table and object."""
    with journal.connect(target, autocommit=True) as conn:
        entries = journal.read(conn)
    run = entries.get("run")
    if run is None:
        return {"state": "none", "tables": [], "objects": {}, "failed": []}
    state, step = run.state, run.detail.get("step")
    if state not in FINAL_STATES:
        # unfinished: the run is either still going or was killed; its owner tells which
        state = "running" if _alive(run.detail.get("owner")) else "interrupted"
    tables = [
        {"table": e.item.split(":", 1)[1], "state": e.state, "rows": e.rows, "rejected": e.rejected}
        for e in entries.values()
        if e.kind == "table"
    ]
    objects = [e for e in entries.values() if e.kind in ("object", "view")]
    return {
        "state": state,
        "journal_state": run.state,
        "step": step if state in ("running", "interrupted") else None,
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


# journaled run states after which nothing more happens without a new command
FINAL_STATES = ("done", "built-with-errors", "online", "cut-over")


def _host() -> str:
    import socket

    return socket.gethostname()


def _alive(owner: dict[str, Any] | None) -> bool:
    """Whether the process that journaled ``owner`` still runs (on this host; a run owned by
    another host is taken to be alive, as it cannot be checked from here)."""
    if not owner:
        return False
    if owner.get("host") != _host():
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
    return verify(plan, target, entries, source=path, jobs=jobs or default_jobs())


def _resume(
    opts: RunOptions,
    run_entry: journal.Entry | None,
    stack: contextlib.ExitStack,
    phase: Callable[[str], None],
) -> _Start:
    """Continue the journaled run: its plan, and its source (unchanged) or snapshot."""
    guard: SourceGuard | None = None
    if run_entry is None:
        raise UsageError(
            "nothing to resume: the target has no emrops migration journal",
            hint="run without --resume",
        )
    plan = Plan.from_dict(run_entry.detail["plan"])
    snap = Path(run_entry.detail["snapshot"])
    run_id = run_entry.detail["run_id"]
    backup_id = run_entry.detail.get("backup_id")
    opts.online = bool(run_entry.detail.get("online"))
    live = bool(run_entry.detail.get("live_source"))
    if not snap.exists():
        raise EmropsError(
            f"the {'source' if live else 'pre-migration snapshot'} {snap} is gone",
            hint="roll back (emrops migrate-db rollback) and run again",
        )
    if live:
        check_unchanged(snap, run_entry.detail.get("source_fingerprint"))
        guard = stack.enter_context(contextlib.closing(SourceGuard(snap)))
    phase("resuming")
    return _Start(plan, snap, run_id, guard, None, backup_id)


def _fresh(
    opts: RunOptions,
    run_entry: journal.Entry | None,
    src_path: Path,
    stack: contextlib.ExitStack,
    phase: Callable[[str], None],
) -> _Start:
    """Start a new run: change capture and a snapshot (online) or the guarded source
    (offline), the plan, the pinned backup (taken alongside the copy, or reused), the
    journal and the bare tables."""
    guard: SourceGuard | None = None
    if run_entry is not None:
        raise EmropsError(
            "the target already holds an emrops migration (table emrops_migration)",
            hint="continue it with --resume, or remove it with `emrops migrate-db rollback`",
        )
    casts = load_casts(opts.cast)
    src = open_source(src_path)
    run_id = new_run_id()
    try:
        if opts.online:
            from emrops.migrate import online  # online runs only (start-up time)

            # the source keeps being written: everything reads a snapshot, taken after
            # change capture is on, and the changes made since are replayed
            phase("installing change capture in the source")
            online.install_capture(src_path, online.capture_tables(reflect(src).tables))
            phase("snapshot of the source")
            snap = opts.state_dir / "migrate" / run_id / "pre-migration.db"
            src.close()
            snapshot(src_path, snap)
        else:
            # offline: the source is read in place (no second copy on disk), and any
            # write to it during the run fails the run (see guard.py)
            snap = src_path
            src.close()
            guard = stack.enter_context(contextlib.closing(SourceGuard(snap)))
        phase("planning")
        snap_conn = open_source(snap)
        try:
            plan = build_plan(snap_conn, casts, full=False)
        finally:
            snap_conn.close()
        _refuse(plan, opts)
        # The pinned backup starts once the plan is accepted and runs alongside the copy
        # (which leaves part of a core idle; the profile before it keeps both busy); the
        # run waits for it once the copy is done. The source is never written, so nothing
        # needs the backup earlier; a run whose backup fails removes what it created.
        reused = (
            prebackup.find(opts.state_dir, src_path, opts.backup_store, opts.settings)
            if opts.backup_store and guard is not None
            else None
        )
        taking: Future[str | None] = Future()
        if reused is not None:  # the same unchanged source: its backup is still good
            taking.set_result(reused.backup_id)
        else:
            backup_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emrops-backup")
            taking = backup_pool.submit(_backup, snap, run_id, opts)
            backup_pool.shutdown(wait=False)
        pending = taking
        try:
            _create(opts.target, plan, run_id, snap, opts, None, guard)
        except BaseException:
            _discard(taking, opts.state_dir / "migrate" / run_id, opts, reused is not None)
            raise
    except BaseException:
        if opts.online:  # a run that never started leaves no trigger behind
            from emrops.migrate import online

            online.remove_capture(src_path)
        raise
    return _Start(plan, snap, run_id, guard, pending, None)
