"""``backup restore``: plan, verify, safety backup, maintenance on, swap, maintenance back.

SQLite: the backup is decoded beside the target and verified there. An existing database is
then restored in place through SQLite's backup API, one write transaction
(:mod:`emrops.backup.sqlite_swap`): the file keeps its inode, owner and mode, and a running sim
server sees the restored data from the commit on, without a restart. A missing target, or one
that is not a database (moved aside), gets the image by rename. The maintenance flag lives
inside the database being replaced: restore switches it on in the *old* file first (so a
running sim app stops taking writes that would be lost), and writes the flag's previous state
into the image, so the commit that brings the restored data also brings the flag back.
PostgreSQL: the relations the backup does not hold are dropped and the ``pg_restore --clean
--if-exists`` script runs, in one transaction (:mod:`emrops.backup.pgrestore`), so readers see
the database switch at commit to the backup's state; the flag is on during the restore and set
back afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from emrops.backup.codec import Progress, no_progress
from emrops.backup.lock import Warn
from emrops.backup.manifest import Manifest, Verification
from emrops.backup.pgdump import pg_tables
from emrops.backup.pgrestore import (
    LOCK_TIMEOUT,
    archive_encoding,
    open_transactions,
    restore_exact,
    restore_failed,
)
from emrops.backup.pgverify import check_postgres
from emrops.backup.run import RunOptions, run_locked
from emrops.backup.snapshot import check_sqlite_file, lenient_text
from emrops.backup.sqlite_swap import (
    ENCODINGS,
    encoding_name,
    encoding_refusal,
    header_says_wal,
    move_aside,
    prepare_image,
    publish_by_rename,
    restore_in_place,
    text_encoding,
)
from emrops.backup.stores import Store
from emrops.backup.verify import (
    Checks,
    VerificationFailed,
    check_sqlite,
    load_manifest,
    materialize,
    record,
    scratch_space,
)
from emrops.db.control import read_maintenance, set_maintenance
from emrops.db.engine import DbUrl, create_engine, db_errors, oneshot_engine, parse_db_url
from emrops.db.quoting import pg_text, quote_ident
from emrops.db.sqlite_file import (
    FOREIGN_JOURNAL_HINT,
    SCHEMA_PARSE_HINT,
    HotJournal,
    check_one_name,
    check_side_files,
    not_a_file,
    open_sqlite,
    schema_parse_error,
    schema_parse_text,
    side_file_of,
)
from emrops.db.urls import sqlite_db_url
from emrops.errors import (
    Busy,
    CheckFailed,
    DatabaseError,
    EmropsError,
    Interrupted,
    UsageError,
)
from emrops.logs import get_logger
from emrops.paths import user_path
from emrops.scratch import (
    Claimed,
    claim,
    restore_scratch_prefix,
    scratch_dir,
    short_name,
    sweep_tmp,
)

log = get_logger(__name__)


@dataclass
class TargetState:
    exists: bool
    revision: str | None = None
    tables: int = 0
    has_control: bool = False
    maintenance: bool = False
    note: str = ""
    # Set when the flag is on because an earlier restore was interrupted: that restore's id
    # and the maintenance state it recorded from before it (what this restore sets back).
    interrupted_restore: str | None = None
    maintenance_before: bool | None = None
    # Why the target takes no restore (a hot standby, default_transaction_read_only, tables
    # of another owner): refused before anything is changed, even with --force.
    read_only: str | None = None

    def previous_maintenance(self) -> bool:
        """The maintenance state to leave behind: the target's, or, when an interrupted
        restore left the flag on, the state that restore found."""
        return self.maintenance if self.maintenance_before is None else self.maintenance_before


_RESTORING = re.compile(r"^restoring backup (\S+); maintenance was (on|off) before$")


def restoring_message(backup_id: str, before: bool) -> str:
    """The maintenance message a restore sets: it names the backup and records the state
    before, so a rerun after a crash or kill can set the flag back to it."""
    return f"restoring backup {backup_id}; maintenance was {'on' if before else 'off'} before"


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
    db = (
        parse_db_url(text)
        if "://" in text
        else parse_db_url(sqlite_db_url(user_path(text).absolute()))
    )
    if db.engine_name == "sqlite" and db.sqlite_path is None:
        raise UsageError(
            f"restore target {text!r} is an in-memory SQLite database: nothing would be kept",
            hint="restore into a file (--target path/to/emrsim.db)",
        )
    path = db.sqlite_path
    if path is not None and path.is_symlink() and not path.exists():
        # A link to a database not made yet: SQLite would create the file it leads to, and the
        # apps that use that path look there; renaming the image over the link would leave
        # them without it. (A loop is left as it is.)
        resolved = Path(os.path.realpath(path))
        if not resolved.is_symlink():
            db = parse_db_url(sqlite_db_url(resolved))
    return db


# What is said of a file that holds no database, the only kind a restore moves aside (with
# --force): its header is not SQLite's, or its pages are damaged. Any other failure to open a
# target says nothing of what the file holds.
NOT_A_DATABASE = ("is not an SQLite database", "file is not a database", "malformed")


def inspect_target(db: DbUrl) -> TargetState:
    if db.engine_name == "sqlite":
        path = db.sqlite_path
        assert path is not None
        side = side_file_of(path)
        if side is not None:
            # even with --force: moved aside, a live database's WAL or hot journal is lost, and
            # the file put there is taken for its WAL or journal, or deleted with it
            raise UsageError(
                f"restore target {path} is the {side[1]} file of the database {side[0]}, not a "
                "database; nothing was changed",
                hint=f"point --target at the database file itself ({side[0]}), or at a new "
                "file name",
            )
        kind = not_a_file(path)
        if kind is not None:
            # never moved aside, even with --force: a typo such as sqlite:////dev/null would
            # rename the system's device node (or a whole folder) and put a database there
            raise UsageError(
                f"restore target {path} is {kind}, not a database file; nothing was changed",
                hint="point --target at an SQLite database file (or a new file name)",
            )
        if not path.exists() or (path.is_file() and path.stat().st_size == 0):
            return TargetState(False)
        check_one_name(path, doing="restore into")  # even with --force: it would corrupt it
        check_side_files(path, doing="restore into")
        try:
            check_sqlite_file(path)
            conn = open_sqlite(path, mode="ro", timeout=10)
            try:
                conn.text_factory = lenient_text  # a table name need not be UTF-8
                names = [
                    r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
                ]
                revision = None
                if "alembic_version" in names:
                    row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
                    revision = row[0] if row else None
            finally:
                conn.close()
        except (UsageError, DatabaseError, sqlite3.DatabaseError, OSError) as exc:
            if _busy(exc):
                # A database another process is writing is a database: never move it aside
                # (its writers would go on writing into the moved file).
                raise DatabaseError(
                    f"{path} stayed locked by another process; nothing was changed",
                    hint="stop what holds it (maintenance mode stops the sim server's "
                    "writes) and run the restore again",
                ) from exc
            if isinstance(exc, HotJournal) and exc.foreign:
                raise DatabaseError(
                    f"{path} has a hot journal ({path.name}-journal) that may not be its own "
                    f"({exc.foreign}; or a VACUUM that changed the page size was interrupted); "
                    "nothing was changed",
                    hint=FOREIGN_JOURNAL_HINT.format(
                        db=shlex.quote(str(path)), journal=shlex.quote(f"{path}-journal")
                    ),
                ) from exc
            if isinstance(exc, HotJournal):
                # A database with the journal that completes it, not junk: moved aside without
                # the journal (renames of the file alone) it is torn, and no safety backup of
                # its last committed state could be taken.
                journal = Path(f"{path}-journal")
                raise DatabaseError(
                    f"{path} has a hot journal ({journal.name}) left by a writer that stopped "
                    "mid-transaction: its last committed data is the file together with that "
                    "journal, which SQLite rolls back on the next read-write open; nothing was "
                    "changed",
                    hint=f"open it once read-write as its owner (e.g. `sqlite3 "
                    f"{shlex.quote(str(path))} 'PRAGMA quick_check'`) so SQLite rolls the "
                    f"journal back, then run the restore again (it takes a safety backup "
                    f"first); never delete {journal.name}",
                ) from exc
            parse = schema_parse_error(exc)
            if parse is not None:
                # A healthy database of an app on a newer SQLite, not junk: moved aside, its
                # running app would go on writing into the moved file, with no safety backup.
                raise DatabaseError(
                    f"restore target {path}: {schema_parse_text(parse)}; it is not moved aside "
                    "as unreadable: nothing was changed",
                    hint=f"{SCHEMA_PARSE_HINT}; or restore into a new file (--target NEW.db)",
                ) from exc
            if not any(marker in str(exc) for marker in NOT_A_DATABASE):
                # SQLite could not open it for a reason outside the file (a folder it cannot
                # write its -shm or -journal in, a permission, an I/O error): it may be a
                # healthy live database, and moved aside its app would go on writing into the
                # moved file, with no safety backup.
                why = f"{exc.strerror}" if isinstance(exc, OSError) else str(exc)
                raise DatabaseError(
                    f"cannot open restore target {path} to check what it holds: {why}; it is "
                    "not moved aside as unreadable: nothing was changed",
                    hint="make the file and its folder readable and writable for this user "
                    "(check `ls -ld`, `lsattr -d` and the mount), or restore into a new file "
                    "(--target NEW.db)",
                ) from exc
            return TargetState(True, note=f"not a readable SQLite database ({exc})")
        state = TargetState(True, revision, len(names), "emrops_control" in names)
        return _with_maintenance(db, state)
    engine = oneshot_engine(db.url)
    try:
        with engine.connect() as pg:
            read_only = _read_only(pg, db) or _not_owned(pg, db)
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
    state.read_only = read_only
    return _with_maintenance(db, state)


_NOT_OWNED_SQL = """
SELECT n.nspname || '.' || c.relname, pg_get_userbyid(c.relowner), current_user,
       count(*) OVER ()
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND NOT pg_has_role(c.relowner, 'USAGE')
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')  -- an extension's own
ORDER BY 1 LIMIT 3
"""


def _not_owned(conn: sa.Connection, db: DbUrl) -> str | None:
    """Why the user cannot restore into the database: relations it does not own (the restore
    drops and recreates them all; another's cannot be dropped, and information_schema hides
    the tables it may not read, so the target would even look empty)."""
    rows = conn.exec_driver_sql(_NOT_OWNED_SQL).fetchall()
    if not rows:
        return None
    named = ", ".join(f"{name} (owned by {owner})" for name, owner, _me, _n in rows)
    return (
        f"user {rows[0][2]} does not own {rows[0][3]} relation(s) of {db.masked()}, which the "
        f"restore drops and recreates: {named}{', ...' if rows[0][3] > len(rows) else ''}"
    )


def _read_only(conn: sa.Connection, db: DbUrl) -> str | None:
    """Why the PostgreSQL database takes no writes, or None when it does."""
    standby, read_only = conn.exec_driver_sql(
        "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'"
    ).one()
    if standby:
        return f"the server of {db.masked()} is a standby (in recovery): it takes no writes"
    if read_only:
        return (
            f"{db.masked()} is read-only: default_transaction_read_only is on for it (ALTER "
            "DATABASE or ALTER ROLE ... SET, or PGOPTIONS)"
        )
    return None


def _busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text or "busy" in text


def _translate(exc: Exception, db: DbUrl) -> DatabaseError:
    from emrops.db.engine import translate

    return translate(exc, db.url)


def _with_maintenance(db: DbUrl, state: TargetState) -> TargetState:
    if state.has_control:
        engine = create_engine(db, readonly=db.engine_name == "sqlite", pool_size=1, max_overflow=0)
        try:
            with db_errors(db), engine.connect() as conn:
                flag = read_maintenance(conn)
        finally:
            engine.dispose()
        state.maintenance = flag.on
        found = _RESTORING.match(flag.message) if flag.on else None
        if found:
            state.interrupted_restore = found.group(1)
            state.maintenance_before = found.group(2) == "on"
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
    if db.sqlite_path is not None and store.holds_path(db.sqlite_path):
        # moved aside as "not a database" and replaced by the image, a backup's data file
        # (or the lock, a manifest) was destroyed, the very backup being restored included
        raise UsageError(
            f"restore target {db.sqlite_path} is inside the backup store {store.url}; nothing "
            "was changed",
            hint="restore into a file outside the store (--target path/to/emrsim.db)",
        )
    state = inspect_target(db)
    if db.engine_name == "sqlite" and state.exists and not state.note:
        assert db.sqlite_path is not None
        # source_id is only typed as an object by the schema (a resealed manifest may hold
        # anything inside): a header that is not an object, or a code that is no encoding,
        # says nothing here; the decoded image is checked again before the copy.
        source_id = manifest.source_id if isinstance(manifest.source_id, dict) else {}
        header = source_id.get("header")
        code = header.get("text_encoding") if isinstance(header, dict) else None
        if code in ENCODINGS and not isinstance(code, bool):
            _refuse_encoding(encoding_refusal(encoding_name(code), db.sqlite_path), db)
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
    if state.read_only:  # the plan shows it: the restore itself stops at check_refusals
        steps.insert(0, f"REFUSED, even with --force: {state.read_only}")
    if state.exists and state.note and db.sqlite_path is not None:
        steps.append(
            f"move the unreadable file aside to {aside_name(db.sqlite_path, backup_id)} "
            "(its -journal/-wal/-shm, if any, beside it)"
        )
    if state.has_control:
        steps.append("switch maintenance on in the target (sim apps answer writes with 503)")
    if state.exists and not (state.note and db.engine_name == "sqlite"):
        steps.append(
            f"safety backup of {db.masked()} into {store.url} (after maintenance is on, so it "
            "holds every write the restore replaces; pinned, so rotate keeps it until it is "
            "unpinned)"
        )
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
        steps.append(
            f"drop what the backup does not hold, pg_restore --clean, in one transaction, "
            f"into {db.masked()}"
        )
    after = "on" if state.previous_maintenance() else "off"
    if state.interrupted_restore:
        steps.append(
            f"maintenance {after} afterwards (as it was before the interrupted restore of "
            f"{state.interrupted_restore}, which left it on)"
        )
    else:
        steps.append(f"maintenance {after} afterwards (as before)")
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


def _refuse_encoding(reason: str | None, db: DbUrl) -> None:
    if reason is None:
        return
    raise EmropsError(
        f"restore refused, even with --force: {reason}; nothing was changed",
        hint="stop the apps that use the target, move it away (with its -wal/-shm), and "
        "restore into the free path: a new file gets the backup's encoding; or restore into "
        f"another file (--target NEW.db) and point the apps at it ({db.masked()} unchanged)",
    )


def check_refusals(plan: RestorePlan, force: bool) -> None:
    if plan.target_state.read_only:
        owner = plan.target_state.read_only.startswith("user ")
        raise EmropsError(
            f"restore refused, even with --force: {plan.target_state.read_only}; nothing was "
            "changed",
            hint="run the restore as the role that owns the database's tables (or a "
            "superuser), or restore into a new database"
            if owner
            else "restore into the primary server, or into a database that takes writes; "
            "where the setting is deliberate, `ALTER DATABASE ... RESET "
            "default_transaction_read_only` first",
        )
    if plan.refusals and not force:
        raise EmropsError(
            "restore refused: " + "; ".join(plan.refusals),
            hint="check the target; --force overwrites it (after a safety backup)",
        )


@dataclass
class _Stage:
    """How far a restore got, for the message of one that is interrupted."""

    name: str = "plan"  # plan | verify | safety | restore | publish | done
    target: str = ""
    flag: bool = False  # the target has the maintenance flag
    before: bool = False  # the maintenance state to leave behind
    flag_left_on: bool = False  # set on by this restore and could not be set back
    created: bool = False  # the target database was created by this restore


_STAGES = {
    "plan": "while planning, before anything was changed",
    "verify": "while verifying the backup, before anything was changed",
    "safety": "during the safety backup, before the target's data was changed",
    "restore": "during the restore, whose transaction was rolled back: the target holds what "
    "it held before",
    "publish": "while moving the restored file into place: the target is either what it was "
    "or the backup (an unreadable file it held is beside it, .before-restore-ID)",
    "done": "after the restore committed: the target holds the backup",
}


def _interrupted(stage: _Stage, backup_id: str) -> Interrupted:
    text = f"interrupted: the restore of {backup_id} into {stage.target} stopped "
    text += _STAGES[stage.name]
    hint = "run the restore again"
    if stage.flag_left_on:
        state = "on" if stage.before else "off"
        text += "; maintenance is still ON there (this restore switched it on)"
        hint += (
            f" (it sets maintenance back to {state}), or `emrops sim maintenance {state} "
            f"--db {stage.target}`"
        )
    elif stage.flag and stage.name not in ("plan", "verify"):
        text += f"; maintenance is {'on' if stage.before else 'off'}, as before"
    if stage.created and stage.name != "done":
        text += " (the database this restore created, empty: a rerun restores into it)"
    return Interrupted(text, hint=hint if stage.name != "done" else None)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a supervisor stopping a job, `kill`) and SIGHUP (the terminal or SSH session
    closed) stop a restore the way Ctrl-C does: the transaction rolls back, the scratch
    database is dropped, the maintenance flag set back. Their default action would end the
    process on the spot, the flag left on without a word. Only the first: later ones are
    ignored while cleaning up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGTERM, signal.SIGHUP)

    def stop(_signum: int, _frame: object) -> None:
        for sig in signals:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def restore(
    store: Store,
    backup_id: str,
    target: str,
    *,
    force: bool = False,
    pg_server: str | None = None,
    progress: Progress = no_progress,
    warn: Warn | None = None,
) -> RestoreResult:
    """Execute a restore under the store lock (re-planning there, so the plan is current).
    Ctrl-C or SIGTERM raises Interrupted (exit 130), saying what the target holds."""
    started = time.monotonic()
    stage = _Stage(target=target_url(target).masked())
    try:
        with _terminate_as_interrupt(), store.lock("backup restore", warn, read_only_ok=True):
            plan = plan_restore(store, backup_id, target)
            check_refusals(plan, force)
            stage.name = "verify"
            stage.flag = plan.target_state.has_control
            stage.before = plan.target_state.previous_maintenance()
            manifest = load_manifest(store, backup_id)
            db = target_url(target)
            if db.engine_name == "sqlite":
                result = _restore_sqlite(store, manifest, plan, db, progress, stage)
            else:
                with _one_restore_into(db, backup_id):
                    result = _restore_postgres(store, manifest, plan, db, progress, stage)
    except KeyboardInterrupt as exc:
        raise _interrupted(stage, backup_id) from exc
    except EmropsError as exc:
        if stage.name == "safety":  # its error is the backup's: say the restore's state
            exc.message += (
                f"; the restore of {backup_id} stopped there, before the target's data was changed"
            )
        raise
    result.duration_s = round(time.monotonic() - started, 3)
    return result


def aside_name(path: Path, backup_id: str) -> Path:
    """Where an unreadable target is moved: ``NAME.before-restore-ID``, or with ``.2``, ``.3``
    ... when an earlier restore of the same backup already moved a file there (renamed over
    it, that file and its side files were lost)."""
    base = path.with_name(f"{short_name(path.name)}.before-restore-{backup_id}")
    candidate, n = base, 1
    while any(os.path.lexists(f"{candidate}{s}") for s in ("", "-journal", "-wal", "-shm")):
        n += 1
        candidate = base.with_name(f"{base.name}.{n}")
    return candidate


def _claim_beside(path: Path) -> Claimed:
    """The scratch file beside an SQLite target the image is decoded into (swept once its run
    dies); the target's folder is created when missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return claim(path.parent, restore_scratch_prefix(path), ".tmp")
    except OSError as exc:
        raise EmropsError(
            f"cannot write into {path.parent}, the folder of restore target {path.name}: "
            f"{exc.strerror or exc}; nothing was changed",
            hint="the restore writes the image beside the target, then swaps it in: make the "
            "folder writable for this user (check `ls -ld`, `lsattr -d` and the mount), or "
            "restore into a file in another folder",
        ) from exc


_RESTORE_LOCK = 0x656D7272  # "emrr": pg_advisory_lock(_RESTORE_LOCK, hashtext(database))


@contextlib.contextmanager
def _one_restore_into(db: DbUrl, backup_id: str) -> Iterator[None]:
    """One restore at a time into a PostgreSQL database, whatever store it restores from (the
    store lock does not see another store's restore): a second one would read the first's
    maintenance message as left by an interrupted restore, and the first's commit would switch
    maintenance off in the middle of the second. An advisory lock, held by a session on the
    server's postgres database for the restore's duration (it ends with the process, killed or
    not). Raises Busy (exit 75) naming the restore that holds it."""
    admin_url = db.url.set(database="postgres")
    engine = oneshot_engine(admin_url, isolation_level="AUTOCOMMIT")
    key = (_RESTORE_LOCK, db.url.database or "")
    try:
        with db_errors(admin_url), engine.connect() as conn:
            me = f"emrops restore {os.getpid()} of {backup_id}"[:63]
            conn.exec_driver_sql("SELECT set_config('application_name', %s, false)", (me,))
            if not conn.exec_driver_sql(
                "SELECT pg_try_advisory_lock(%s, hashtext(%s))", key
            ).scalar():
                holder = conn.exec_driver_sql(
                    "SELECT a.application_name, a.pid, "
                    "to_char(a.backend_start AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s "
                    "AND l.objid = hashtext(%s)::oid AND l.objsubid = 2",
                    key,
                ).first()
                who = f"{holder[0]}, server pid {holder[1]}, since {holder[2]}" if holder else "?"
                raise Busy(
                    f"another restore into {db.masked()} is running ({who}): nothing was changed",
                    hint="wait for it to end, check what the target holds, then run this "
                    "restore again if it is still wanted",
                )
            try:
                yield
            finally:
                with contextlib.suppress(Exception):  # the lock ends with the session anyway
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
    finally:
        engine.dispose()


def _safety_backup(store: Store, db: DbUrl, backup_id: str, progress: Progress) -> str:
    # Pinned: it holds the only copy of every write the restore replaces (made after the
    # restored backup). Unpinned, it did not count as verified and the next rotate deleted it,
    # often before anyone found out the restore was a mistake.
    opts = RunOptions(
        db_url=str(db),
        label=f"safety copy before restore of {backup_id}",
        pin=True,
        pin_reason=f"safety copy before restore of {backup_id}: unpin it (`emrops backup unpin "
        "ID`) once the restored data is known good",
    )
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
    store: Store,
    manifest: Manifest,
    plan: RestorePlan,
    db: DbUrl,
    progress: Progress,
    stage: _Stage,
) -> RestoreResult:
    path = db.sqlite_path
    assert path is not None
    sweep_tmp()
    claimed = _claim_beside(path)
    scratch = claimed.path
    started = time.monotonic()
    checks = Checks()
    try:
        fd = os.open(scratch, os.O_WRONLY | os.O_TRUNC)
        with (
            os.fdopen(fd, "wb") as sink,
            scratch_space(path.parent, f"restore backup {manifest.id} (nothing was restored)"),
        ):
            if materialize(store, manifest, manifest.database_file(), sink, checks, progress):
                sink.flush()
                os.fsync(sink.fileno())
                check_sqlite(scratch, manifest, checks)
        verification = _verified(store, manifest, checks, started)
        result = RestoreResult(plan, verification)
        state = plan.target_state
        before = state.previous_maintenance()
        previous: os.stat_result | None = None
        if state.exists and state.note:
            stage.name = "publish"
            aside = aside_name(path, manifest.id)
            previous = os.stat(path)
            move_aside(path, aside)
            result.moved_aside = str(aside)
        in_place = state.exists and not state.note
        if in_place:  # the image is what counts (a manifest older than source ids has none)
            _refuse_encoding(encoding_refusal(text_encoding(scratch), path), db)
        target_wal = header_says_wal(path) if in_place else None  # before the flag step
        if in_place:  # a rewrite SQLite refuses stops here, before the target changes
            prepare_image(scratch, path, wal=bool(target_wal))
        _set_flag_in_file(scratch, before)
        if not in_place:
            stage.name = "publish"
            result.notes.extend(publish_by_rename(scratch, path, previous))
            stage.name = "done"
            return result
        with _maintenance_during(db, state, manifest.id, result, stage):
            # After the flag: every write the running apps committed is in the safety backup.
            stage.name = "safety"
            result.safety_backup_id = _safety_backup(store, db, manifest.id, progress)
            stage.name = "restore"
            restore_in_place(scratch, path, wal=target_wal)
            stage.name = "done"
        result.notes.append(
            "restored in place: processes that have the file open (a running sim server) "
            "read the restored data from now on, no restart or signal needed"
        )
        return result
    finally:
        claimed.release()


@contextlib.contextmanager
def _maintenance_during(
    db: DbUrl, state: TargetState, backup_id: str, result: RestoreResult, stage: _Stage
) -> Iterator[None]:
    """Maintenance on in the target (when it has the flag) for the safety backup and the swap.
    The message records the state before, so a rerun after a kill sets it back. When the
    block fails cleanly (safety backup or swap refused: the data is unchanged), the flag is
    set back at once. For SQLite the swapped-in image already carries the previous state; for
    PostgreSQL the caller sets it after the swap."""
    before = state.previous_maintenance()
    if state.interrupted_restore:
        result.notes.append(
            f"maintenance was left on by the interrupted restore of {state.interrupted_restore}; "
            f"it is set back to {'on' if before else 'off'}, as that restore found it"
        )
    if not state.has_control:
        yield
        return
    try:
        _set_flag(db, True, restoring_message(backup_id, before))
    except EmropsError as exc:
        exc.message += "; nothing was changed"
        raise
    try:
        yield
    except BaseException as exc:
        if stage.name == "done":
            raise  # the flag came back with the restored data
        try:
            _set_flag(db, before)
        except Exception:
            stage.flag_left_on = True
            if isinstance(exc, EmropsError):
                exc.hint = (
                    f"{exc.hint + '; ' if exc.hint else ''}maintenance is still on in the target: "
                    "rerun the restore (it sets it back), or run "
                    f"`emrops sim maintenance {'on' if before else 'off'} --db {db.masked()}`"
                )
        raise


def _set_flag(db: DbUrl, on: bool, message: str = "") -> None:
    """Switch the target's flag. On PostgreSQL switching waits for the writes in flight (a lock
    on the flag's table), and a session idle in transaction after reading the flag would make
    it wait for ever: the wait is bounded like the restore's (the target's lock_timeout, else
    LOCK_TIMEOUT), and the sessions in the way are named."""
    engine = create_engine(db, pool_size=1, max_overflow=0, create=False)
    if db.engine_name == "postgresql":
        sa.event.listen(engine, "connect", _bounded_lock_wait)
    try:
        set_maintenance(engine, on, message)
    except DatabaseError as exc:
        if "lock timeout" not in exc.message:
            raise
        holders = open_transactions(str(db))
        raise DatabaseError(
            f"could not switch maintenance {'on' if on else 'off'} in {db.masked()}: "
            f"{exc.message.rsplit(': ', 1)[-1]} (the flag's table stays locked); sessions with "
            "a transaction open there: " + ("; ".join(holders) if holders else "none any more"),
            hint="end them (stop the app, or SELECT pg_terminate_backend(PID)) and run the "
            "restore again",
        ) from exc
    finally:
        engine.dispose()


def _bounded_lock_wait(dbapi_conn: Any, _record: object) -> None:
    autocommit = dbapi_conn.autocommit
    dbapi_conn.autocommit = True  # a SET in a transaction the pool rolls back would not last
    try:
        if dbapi_conn.execute("SHOW lock_timeout").fetchone()[0] in ("0", ""):
            dbapi_conn.execute(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    finally:
        dbapi_conn.autocommit = autocommit


def _set_flag_in_file(path: Path, on: bool) -> None:
    """Give the restored file the target's previous maintenance state (if it has the table)."""
    conn = open_sqlite(path, mode="rw")
    conn.text_factory = lenient_text  # a table name need not be UTF-8
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
    store: Store,
    manifest: Manifest,
    plan: RestorePlan,
    db: DbUrl,
    progress: Progress,
    stage: _Stage,
) -> RestoreResult:
    started = time.monotonic()
    checks = Checks()
    with scratch_dir(None, "emrops-restore-") as tmp:
        archive = tmp / "database.pgdump"
        with (
            scratch_space(tmp, f"restore backup {manifest.id} (nothing was restored)"),
            archive.open("wb") as sink,
        ):
            ok = materialize(store, manifest, manifest.database_file(), sink, checks, progress)
        if ok:
            check_postgres(archive, manifest, str(db), checks)
        verification = _verified(store, manifest, checks, started)
        result = RestoreResult(plan, verification)
        state = plan.target_state
        if not state.exists and state.note:
            _create_database(db, archive_encoding(archive), result)
            stage.created = True
        with _maintenance_during(db, state, manifest.id, result, stage):
            if state.exists:  # after the flag: it holds every write the restore replaces
                stage.name = "safety"
                result.safety_backup_id = _safety_backup(store, db, manifest.id, progress)
            progress("restore", 0, None)
            stage.name = "restore"
            # The flag is set back in the restore's own transaction: the commit that brings
            # the backup's data brings the target's maintenance state with it, and nothing
            # is left to do after it that a kill or a lost connection could leave undone.
            done = restore_exact(archive, str(db), _flag_sql(state.previous_maintenance()))
            if done.code != 0:
                raise restore_failed(str(db), db.masked(), done.code, done.message)
            stage.name = "done"
            if done.dropped:
                result.notes.append(
                    f"dropped {len(done.dropped)} relation(s) created after the backup (their "
                    f"rows are in the safety backup): {', '.join(done.dropped)}"
                )
            if done.large_objects_gone or (done.large_objects and done.large_objects_gone is None):
                result.notes.append(
                    f"removed {done.large_objects_gone} large object(s) the backup does not "
                    "hold (their contents are in the safety backup)"
                    if done.large_objects_gone
                    else f"replaced the target's {done.large_objects} large object(s) by the "
                    "backup's (the target's are in the safety backup)"
                )
            if done.leftover:
                result.notes.append(
                    f"left in place {len(done.leftover)} object(s) the backup does not hold "
                    "(made after it; code outside the database may use them; their "
                    f"definitions are in the safety backup): {', '.join(done.leftover)}"
                )
        return result


def _flag_sql(on: bool) -> str:
    """SQL giving the restored database's maintenance flag the state ``on`` (as
    :func:`emrops.db.control.set_maintenance` writes it), when the backup has the flag's
    table (a database that is not EMRsim's has no flag)."""
    value = json.dumps({"on": on, "message": "down for maintenance" if on else ""})
    return (
        "DO $emrops$ BEGIN IF to_regclass('public.emrops_control') IS NOT NULL THEN\n"
        "DELETE FROM public.emrops_control WHERE key = 'maintenance';\n"
        "INSERT INTO public.emrops_control (key, value, updated_at) "
        f"VALUES ('maintenance', {_pg_literal(value)}, now());\n"
        "END IF; END $emrops$;\n"
    )


def _pg_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_database(db: DbUrl, encoding: str | None, result: RestoreResult) -> None:
    """Create the target database in the encoding the backup's database had: a SQL_ASCII or
    LATIN1 dump restored into the server's default UTF8 would put bytes in that are not UTF-8
    (pg_restore does not convert from SQL_ASCII), and every query reading them would fail.
    Such an encoding takes the C locale, the one that fits every encoding."""
    admin_url = db.url.set(database="postgres")
    engine = oneshot_engine(admin_url, isolation_level="AUTOCOMMIT")
    sql = f"CREATE DATABASE {quote_ident(db.url.database or '')}"
    try:
        with db_errors(admin_url), engine.connect() as conn:
            server = conn.exec_driver_sql("SHOW server_encoding").scalar()
            if encoding and server and encoding.upper() != str(server).upper():
                sql += f" TEMPLATE template0 ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'"
                result.notes.append(
                    f"created {db.url.database} with the backup's encoding {encoding} (C locale)"
                )
            conn.exec_driver_sql(pg_text(sql))
    finally:
        engine.dispose()
