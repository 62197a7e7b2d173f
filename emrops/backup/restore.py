"""``backup restore``: plan, verify, safety backup, maintenance on, swap, maintenance back.

SQLite: the backup is decoded beside the target and verified there. An existing database is
then restored in place through SQLite's backup API, one write transaction
(:mod:`emrops.backup.sqlite_swap`): the file keeps its inode, owner and mode, and a running sim
server sees the restored data from the commit on, without a restart. A missing target, or one
that is not a database (moved aside), gets the image by rename. The maintenance flag lives
inside the database being replaced: restore switches it on in the *old* file first (so a
running sim app stops taking writes that would be lost), and writes the flag's previous state
into the image, so the commit that brings the restored data also brings the flag back.
PostgreSQL: ``pg_restore --clean --if-exists --single-transaction`` into the target
database, which readers see switch at commit; the flag is on during the restore and set
back afterwards.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from emrops.backup.codec import Progress, _noop
from emrops.backup.lock import Warn
from emrops.backup.manifest import Manifest, Verification
from emrops.backup.pgdump import pg_tables
from emrops.backup.pgverify import check_postgres, pg_restore
from emrops.backup.run import RunOptions, run_locked
from emrops.backup.snapshot import check_sqlite_file
from emrops.backup.sqlite_swap import header_says_wal, publish_by_rename, restore_in_place
from emrops.backup.stores import Store
from emrops.backup.verify import (
    Checks,
    VerificationFailed,
    check_sqlite,
    load_manifest,
    materialize,
    record,
)
from emrops.db.control import read_maintenance, set_maintenance
from emrops.db.engine import DbUrl, create_engine, db_errors, parse_db_url
from emrops.db.quoting import pg_text, quote_ident
from emrops.db.sqlite_file import open_sqlite
from emrops.db.urls import sqlite_db_url
from emrops.errors import CheckFailed, DatabaseError, EmropsError, UsageError
from emrops.logs import get_logger
from emrops.scratch import claim, scratch_dir, sweep_tmp

log = get_logger(__name__)


@dataclass
class TargetState:
    exists: bool
    revision: str | None = None
    tables: int = 0
    has_control: bool = False
    maintenance: bool = False
    note: str = ""


@dataclass
class RestorePlan:
    backup_id: str
    backup_engine: str
    backup_revision: str | None
    backup_created_at: str
    target: str  # masked
    target_engine: str
    target_state: TargetState
    steps: list[str]
    refusals: list[str]  # overridden by --force
    safety_backup: bool


@dataclass
class RestoreResult:
    plan: RestorePlan
    verification: Verification
    safety_backup_id: str | None = None
    moved_aside: str | None = None
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def target_url(text: str) -> DbUrl:
    """A database URL, or a path meaning an SQLite file."""
    if "://" in text:
        return parse_db_url(text)
    return parse_db_url(sqlite_db_url(Path(text).expanduser().absolute()))


def inspect_target(db: DbUrl) -> TargetState:
    if db.engine_name == "sqlite":
        path = db.sqlite_path
        assert path is not None
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            return TargetState(False)
        try:
            check_sqlite_file(path)
            conn = open_sqlite(path, mode="ro", timeout=10)
            try:
                names = [
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                revision = None
                if "alembic_version" in names:
                    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                    revision = row[0] if row else None
            finally:
                conn.close()
        except (UsageError, DatabaseError, sqlite3.DatabaseError) as exc:
            return TargetState(True, note=f"not a readable SQLite database ({exc})")
        state = TargetState(True, revision, len(names), "emrops_control" in names)
        return _with_maintenance(db, state)
    engine = sa.create_engine(db.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as pg:
            tables = pg_tables(pg)
            revision = None
            if ("public", "alembic_version") in tables:
                revision = pg.exec_driver_sql(
                    "SELECT version_num FROM public.alembic_version"
                ).scalar()
    except sa.exc.OperationalError as exc:
        if "does not exist" in str(exc.orig):
            return TargetState(False, note="database does not exist yet; restore creates it")
        raise _translate(exc, db) from exc
    finally:
        engine.dispose()
    state = TargetState(bool(tables), revision, len(tables), ("public", "emrops_control") in tables)
    return _with_maintenance(db, state)


def _translate(exc: Exception, db: DbUrl) -> DatabaseError:
    from emrops.db.engine import translate

    return translate(exc, db.url)


def _with_maintenance(db: DbUrl, state: TargetState) -> TargetState:
    if state.has_control:
        engine = create_engine(db, readonly=db.engine_name == "sqlite", pool_size=1, max_overflow=0)
        try:
            with db_errors(db), engine.connect() as conn:
                state.maintenance = read_maintenance(conn).on
        finally:
            engine.dispose()
    return state


def plan_restore(store: Store, backup_id: str, target: str) -> RestorePlan:
    """What restore would do, and what it refuses without --force. Changes nothing."""
    manifest = load_manifest(store, backup_id)
    if manifest.seal_valid is False:
        raise CheckFailed(
            f"the manifest of backup {backup_id} does not match its seal (a field was changed "
            "after it was written): nothing restored",
            hint="restore another backup; see `emrops backup list`",
        )
    db = target_url(target)
    if db.engine_name != manifest.engine:
        raise UsageError(
            f"backup {backup_id} is a {manifest.engine} backup and the target is {db.engine_name}: "
            "restore cannot convert between engines, even with --force",
            hint="restore into the same engine, then copy across with `emrops migrate`",
        )
    state = inspect_target(db)
    refusals = []
    if state.exists:
        what = state.note or f"{state.tables} tables, schema revision {state.revision or 'none'}"
        refusals.append(f"target {db.masked()} already holds data ({what})")
        other = _other_source(manifest, target)
        if other:
            refusals.append(other)
        if not state.note and state.revision != manifest.schema_revision:
            refusals.append(
                f"schema revision differs: backup {manifest.schema_revision or 'none'}, "
                f"target {state.revision or 'none'}"
            )
    steps = [
        f"verify backup {backup_id} (checksum, decrypt, decompress, integrity, row counts)",
    ]
    if state.exists:
        if state.note and db.engine_name == "sqlite":
            steps.append(
                f"move the unreadable file aside to {db.sqlite_path}.before-restore-{backup_id}"
            )
        else:
            steps.append(f"safety backup of {db.masked()} into {store.url}")
    if state.has_control:
        steps.append("switch maintenance on in the target (sim apps answer writes with 503)")
    if db.engine_name == "sqlite" and state.exists and not state.note:
        steps.append(
            f"copy into {db.sqlite_path} in place (SQLite backup API, one transaction; "
            "a running sim server serves the restored data from its commit)"
        )
    elif db.engine_name == "sqlite":
        steps.append(
            f"write beside, then rename over {db.sqlite_path}; remove its -wal/-shm/-journal"
        )
    else:
        if not state.exists and state.note:
            steps.append(f"create database {db.url.database}")
        steps.append(f"pg_restore --clean --single-transaction into {db.masked()}")
    steps.append(f"maintenance {'on' if state.maintenance else 'off'} afterwards (as before)")
    return RestorePlan(
        backup_id=backup_id,
        backup_engine=manifest.engine,
        backup_revision=manifest.schema_revision,
        backup_created_at=manifest.created_at,
        target=db.masked(),
        target_engine=db.engine_name,
        target_state=state,
        steps=steps,
        refusals=refusals,
        safety_backup=state.exists and not (state.note and db.engine_name == "sqlite"),
    )


def _other_source(manifest: Manifest, target: str) -> str | None:
    """A refusal when the existing target is another database than the backup's source."""
    from emrops.backup.sources import identity_of, same_database

    if manifest.source_id is None:
        return None  # an old manifest: its source URL is not an identity to compare
    same = same_database(manifest.source_id, identity_of(target))
    if same is False:
        return (
            f"the target is another database than the one backup {manifest.id} was taken of "
            f"({manifest.source})"
        )
    return None


def check_refusals(plan: RestorePlan, force: bool) -> None:
    if plan.refusals and not force:
        raise EmropsError(
            "restore refused: " + "; ".join(plan.refusals),
            hint="check the target; --force overwrites it (after a safety backup)",
        )


def restore(
    store: Store,
    backup_id: str,
    target: str,
    *,
    force: bool = False,
    pg_server: str | None = None,
    progress: Progress = _noop,
    warn: Warn | None = None,
) -> RestoreResult:
    """Execute a restore under the store lock (re-planning there, so the plan is current)."""
    started = time.monotonic()
    with store.lock("backup restore", warn):
        plan = plan_restore(store, backup_id, target)
        check_refusals(plan, force)
        manifest = load_manifest(store, backup_id)
        db = target_url(target)
        if db.engine_name == "sqlite":
            result = _restore_sqlite(store, manifest, plan, db, progress)
        else:
            result = _restore_postgres(store, manifest, plan, db, progress)
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def _safety_backup(store: Store, db: DbUrl, backup_id: str, progress: Progress) -> str:
    opts = RunOptions(db_url=str(db), label=f"safety copy before restore of {backup_id}")
    return run_locked(store, opts, None, progress).id


def _verified(store: Store, manifest: Manifest, checks: Checks, started: float) -> Verification:
    verification = record(store, manifest, checks, started)
    if not verification.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verification.failed)
        raise VerificationFailed(
            f"backup {manifest.id} failed verification, nothing restored: {failed}", [verification]
        )
    return verification


def _restore_sqlite(
    store: Store, manifest: Manifest, plan: RestorePlan, db: DbUrl, progress: Progress
) -> RestoreResult:
    path = db.sqlite_path
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_tmp()
    claimed = claim(path.parent, f".{path.name}.restore-", ".tmp")  # swept once its run dies
    scratch = claimed.path
    started = time.monotonic()
    checks = Checks()
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_TRUNC)
        with os.fdopen(fd, "wb") as sink:
            if materialize(store, manifest, manifest.database_file(), sink, checks, progress):
                sink.flush()
                os.fsync(sink.fileno())
                check_sqlite(scratch, manifest, checks)
        verification = _verified(store, manifest, checks, started)
        result = RestoreResult(plan, verification)
        state = plan.target_state
        previous: os.stat_result | None = None
        if state.exists and state.note:
            aside = path.with_name(f"{path.name}.before-restore-{manifest.id}")
            previous = os.stat(path)
            os.replace(path, aside)
            result.moved_aside = str(aside)
        elif state.exists:
            result.safety_backup_id = _safety_backup(store, db, manifest.id, progress)
        in_place = state.exists and not state.note
        target_wal = header_says_wal(path) if in_place else None  # before the flag step
        if state.has_control:
            _set_flag(db, True, f"restoring backup {manifest.id}")
        _set_flag_in_file(scratch, state.maintenance)
        if in_place:
            restore_in_place(scratch, path, wal=target_wal)
            result.notes.append(
                "restored in place: processes that have the file open (a running sim server) "
                "read the restored data from now on, no restart or signal needed"
            )
        else:
            result.notes.extend(publish_by_rename(scratch, path, previous))
        return result
    finally:
        claimed.release()


def _set_flag(db: DbUrl, on: bool, message: str = "") -> None:
    engine = create_engine(db, pool_size=1, max_overflow=0, create=False)
    try:
        set_maintenance(engine, on, message)
    finally:
        engine.dispose()


def _set_flag_in_file(path: Path, on: bool) -> None:
    """Give the restored file the target's previous maintenance state (if it has the table)."""
    conn = open_sqlite(path, mode="rw")
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    if "emrops_control" not in names:
        return
    db = parse_db_url(sqlite_db_url(path))
    engine = create_engine(db, pool_size=1, max_overflow=0, create=False)
    try:
        with db_errors(db), engine.connect() as conn2:
            current = read_maintenance(conn2).on
        if current != on:
            set_maintenance(engine, on, "maintenance" if on else "")
    finally:
        engine.dispose()


def _restore_postgres(
    store: Store, manifest: Manifest, plan: RestorePlan, db: DbUrl, progress: Progress
) -> RestoreResult:
    started = time.monotonic()
    checks = Checks()
    with scratch_dir(None, "emrops-restore-") as tmp:
        archive = tmp / "database.pgdump"
        with archive.open("wb") as sink:
            ok = materialize(store, manifest, manifest.database_file(), sink, checks, progress)
        if ok:
            check_postgres(archive, manifest, str(db), checks)
        verification = _verified(store, manifest, checks, started)
        result = RestoreResult(plan, verification)
        state = plan.target_state
        if not state.exists and state.note:
            _create_database(db)
        if state.exists:
            result.safety_backup_id = _safety_backup(store, db, manifest.id, progress)
        if state.has_control:
            _set_flag(db, True, f"restoring backup {manifest.id}")
        progress("restore", 0, None)
        code, message = pg_restore(
            archive, str(db), "--clean", "--if-exists", "--single-transaction"
        )
        if code != 0:
            if state.has_control:
                _set_flag(db, state.maintenance)
            raise DatabaseError(
                f"pg_restore into {db.masked()} failed (exit {code}), target unchanged: {message}"
            )
        _set_flag(db, state.maintenance)
        return result


def _create_database(db: DbUrl) -> None:
    admin_url = db.url.set(database="postgres")
    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with db_errors(admin_url), engine.connect() as conn:
            conn.exec_driver_sql(pg_text(f"CREATE DATABASE {quote_ident(db.url.database or '')}"))
    finally:
        engine.dispose()
