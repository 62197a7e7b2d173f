"""How a ``migrate-db run`` starts: fresh (change capture and a snapshot when online, the
guarded source when offline; the plan, refused on anomalies or a target in the way; the
pinned pre-migration backup, taken alongside the copy or reused; the journal and the bare
tables) or resumed from the journal. Also what undoes a run that could not go on."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from emrops.backup.snapshot import Snapshot, use_sqlite_snapshot
from emrops.db.urls import simple_sqlite_path, sqlite_db_url
from emrops.errors import CheckFailed, EmropsError, UsageError
from emrops.logs import iso_utc, new_run_id
from emrops.migrate import journal, prebackup
from emrops.migrate.casts import load_casts
from emrops.migrate.guard import SourceGuard, check_unchanged
from emrops.migrate.plan import Plan
from emrops.migrate.planner import build_plan, open_source
from emrops.migrate.reflect import quote, reflect

if TYPE_CHECKING:
    from emrops.migrate.run import RunOptions


def source_path(url: str) -> Path:
    """The SQLite file of ``--from``: a ``sqlite:///`` URL (a ``?`` that belongs to an
    existing file's name is read as part of it, see db.urls.whole_name), or a bare path to
    an existing file."""
    text = str(url).strip()
    if "://" not in text and text and Path(text).is_file():
        return Path(text)
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


@dataclass
class Start:
    """What a run starts from: fresh (:func:`fresh`) or resumed (:func:`resume`)."""

    plan: Plan
    snap: Path  # what the copy reads: the source itself (offline) or a snapshot (online)
    run_id: str
    guard: SourceGuard | None  # offline: fails the run if the source is written meanwhile
    pending: Future[str | None] | None  # the pinned backup being taken (fresh runs)
    backup_id: str | None  # the journaled backup (resumed runs)


def resume(
    opts: RunOptions,
    run_entry: journal.Entry | None,
    stack: contextlib.ExitStack,
    phase: Callable[[str], None],
    src_path: Path | None = None,
) -> Start:
    """Continue the journaled run: its plan, and its source (unchanged) or snapshot, and the
    pinned backup it took (journaled, or found by the source's fingerprint when the run
    stopped before it could journal it)."""
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
    if backup_id is None and opts.backup_store and src_path is not None and not opts.online:
        # the run stopped (a failed copy, a kill) before journaling the backup it took
        found = prebackup.find(opts.state_dir, src_path, opts.backup_store, opts.settings)
        backup_id = (
            found.backup_id
            if found is not None
            else prebackup.find_of_run(opts.backup_store, opts.settings, run_id)
        )
        if backup_id is not None:
            with journal.connect(opts.target, autocommit=True) as conn:
                journal.set_detail(conn, "run", "backup_id", backup_id)
    phase("resuming")
    return Start(plan, snap, run_id, guard, None, backup_id)


def fresh(
    opts: RunOptions,
    run_entry: journal.Entry | None,
    src_path: Path,
    stack: contextlib.ExitStack,
    phase: Callable[[str], None],
) -> Start:
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
            # offline, the source itself is copied: the backup is remembered under its
            # fingerprint as soon as it is published, for a rerun or a --resume after a kill
            remember = (src_path, guard.fingerprint) if guard is not None else None
            taking = backup_pool.submit(_backup, snap, run_id, opts, remember)
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
    return Start(plan, snap, run_id, guard, pending, None)


def _refuse(plan: Plan, opts: RunOptions) -> None:
    """Refuse to start on unresolved anomalies (with abort; a default without a PostgreSQL
    equivalent always, as no row holds it to reject) or a target holding the tables."""
    defaults = [a for a in plan.anomalies if a.condition == "default"]
    if defaults:
        a = defaults[0]
        raise CheckFailed(
            f"{len(defaults)} column default(s) have no PostgreSQL equivalent for the planned "
            f"type; first: table {a.table}, column {a.column}: {a.message}",
            hint='add a cast rule for the column in a cast file (--cast): default = "" for '
            'no default, or default = "..." (a PostgreSQL expression); --on-error reject '
            "rejects rows, and no row holds a default",
        )
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


def remove_run(opts: RunOptions, run_id: str, src_path: Path) -> None:
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


def settle_backup(pending: Future, target: str) -> str | None:
    """Wait for the pinned backup (re-raising its error) and journal its id."""
    backup_id = pending.result()
    if backup_id:
        with journal.connect(target, autocommit=True) as conn:
            journal.set_detail(conn, "run", "backup_id", backup_id)
    return backup_id  # type: ignore[no-any-return]


def _backup(
    snap: Path,
    run_id: str,
    opts: RunOptions,
    remember: tuple[Path, dict[str, Any]] | None = None,
) -> str | None:
    """A pinned `backup run` of the snapshot (the source as copied), so rotation cannot remove
    it while the migration is not finished. Returns its backup id; with ``remember`` (the
    source and its fingerprint) the backup is recorded for reuse (prebackup.py) at once."""
    if not opts.backup_store:
        return None
    prebackup.preloaded()
    from emrops.backup.run import RunOptions as BackupOptions
    from emrops.backup.run import run_backup
    from emrops.backup.stores import open_store

    store = open_store(opts.backup_store, opts.settings)
    label = prebackup.label_prefix(run_id) + _shown(opts.source)
    # zstd level 1: half the CPU of the default level 3 for a file 3% larger (measured on the
    # benchmark database), and this backup runs while the snapshot is profiled on both cores
    manifest = run_backup(
        store, BackupOptions(db_url=sqlite_db_url(snap), label=label, pin=True, level=1)
    )
    if remember is not None:
        source, fp = remember
        prebackup.remember(opts.state_dir, source, opts.backup_store, str(manifest.id), fp)
    return str(manifest.id)


def _shown(source: str) -> str:
    """The source as reports show it (an SQLite URL holds no secret): its file's URL."""
    path = simple_sqlite_path(source)
    if path is not None:
        return f"sqlite:///{path}"
    return sqlite_db_url(source_path(source))


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
