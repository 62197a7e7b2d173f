"""``backup run``: snapshot -> zstd [-> age] -> store, manifest last."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from emrops import __version__
from emrops.backup import crypto
from emrops.backup.codec import Progress, encode, no_progress
from emrops.backup.lock import Warn
from emrops.backup.manifest import MANIFEST, PIN, DataFile, Manifest, new_backup_id
from emrops.backup.snapshot import Snapshot, use_sqlite_snapshot
from emrops.backup.stores import Store
from emrops.db.urls import simple_sqlite_path
from emrops.errors import Busy, EmropsError, UsageError
from emrops.logs import get_logger, iso_utc

log = get_logger(__name__)


@dataclass
class RunOptions:
    db_url: str
    label: str = ""
    pin: bool = False
    pin_reason: str = "pinned at backup time"
    encrypt: bool = False
    recipients: str | None = None  # age1... keys, comma separated
    level: int = 3
    scratch_dir: Path | None = None


def run_backup(
    store: Store, opts: RunOptions, progress: Progress = no_progress, warn: Warn | None = None
) -> Manifest:
    """Take one backup under the store lock and return its manifest.

    Raises Busy when another run holds the lock, UsageError/DatabaseError for a bad source,
    EmropsError when the store cannot be written; nothing is published in those cases.
    """
    recipients = crypto.parse_recipients(opts.recipients) if opts.encrypt else None
    check_source(opts.db_url)  # before the lock: a bad source creates no store folder or .lock
    with store.lock("backup run", warn):
        return run_locked(store, opts, recipients, progress)


def check_source(db_url: str) -> None:
    """Refuse a source that cannot be backed up (a missing or non-SQLite file, an in-memory
    database, an unreachable PostgreSQL database) before anything is created in the store."""
    path = simple_sqlite_path(db_url)
    if path is None:
        from emrops.db.engine import DbUrl, parse_db_url

        db: DbUrl = parse_db_url(db_url)
        if db.engine_name == "sqlite":
            if db.sqlite_path is None:
                raise UsageError("an in-memory SQLite database cannot be backed up")
            path = db.sqlite_path
        else:
            _probe_postgres(db)
            return
    from emrops.backup.snapshot import check_sqlite_file
    from emrops.db.sqlite_file import check_one_name, check_side_files

    check_sqlite_file(path)
    check_one_name(path)
    check_side_files(path)


def _probe_postgres(db: Any) -> None:
    from emrops.db.engine import create_engine, db_errors

    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        with db_errors(db), engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()


def run_locked(
    store: Store, opts: RunOptions, recipients: list[Any] | None, progress: Progress = no_progress
) -> Manifest:
    """The backup itself; the caller holds the store lock (restore takes safety backups so)."""
    path = simple_sqlite_path(opts.db_url)
    if path is not None:
        engine, source = "sqlite", f"sqlite:///{path}"
    else:
        from emrops.db.engine import parse_db_url

        db = parse_db_url(opts.db_url)
        engine, source, path = db.engine_name, db.masked(), db.sqlite_path
        if engine == "sqlite" and path is None:
            raise UsageError("an in-memory SQLite database cannot be backed up")
    from emrops.backup.sources import identity_of

    source_id = identity_of(str(path) if path is not None else opts.db_url)
    remove_leftovers(store)
    backup_id = new_backup_id()
    started = time.monotonic()
    created_at = iso_utc()
    suffix = ".zst.age" if recipients else ".zst"
    files: list[DataFile] = []

    def draft(snap: Snapshot) -> Manifest:
        return Manifest(
            id=backup_id,
            created_at=created_at,
            engine=engine,
            source=source,
            schema_revision=snap.schema_revision,
            row_counts=snap.row_counts,
            files=files,
            tool_version=__version__,
            host=socket.gethostname(),
            label=opts.label,
            duration_s=round(time.monotonic() - started, 3),
            engine_info=snap.engine_info,
            source_id=source_id,
        )

    data = _Data(store, backup_id, suffix, opts.level, recipients, progress, draft)
    try:
        progress("snapshot", 0, None)
        if path is not None:
            snap = _sqlite(path, opts.scratch_dir, data, files)
        else:
            snap = _postgres(db, data, files)
        manifest = draft(snap).seal_now()
        progress("publish", 0, None)
        if opts.pin:  # the pin goes first: once the manifest exists, the backup is complete
            store.write_bytes(f"{backup_id}/{PIN}", pin_record(backup_id, opts.pin_reason))
        store.write_bytes(f"{backup_id}/{MANIFEST}", manifest.to_json())
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete_backup(backup_id)
        raise
    log.info("backup %s published to %s (%d bytes)", backup_id, store.url, manifest.size)
    if not manifest.row_counts:
        # Faithful, and verify passes on it, but rarely what was meant: a mistyped path that
        # SQLite opened, or a WAL database whose -wal (holding every table) was deleted.
        log.warning(
            "backup %s holds a database with no tables: check that %s is the database you meant",
            backup_id,
            source,
        )
    return manifest


def remove_leftovers(store: Store) -> None:
    """Remove what interrupted runs left (never listed as backups). Housekeeping: a store
    that may not delete (a SAS without 'd', an immutability policy: set so that a writer
    cannot destroy backups) keeps them, with a warning, and the backup is still taken."""
    try:
        removed = store.cleanup()
    except Busy:
        raise
    except EmropsError as exc:
        log.warning("leftovers of interrupted runs stay in %s: %s", store.url, exc.message)
        return
    if removed:
        log.info("removed %d leftover(s) of interrupted runs: %s", len(removed), ", ".join(removed))


@dataclass
class _Data:
    """Writes one data file of a backup: compress (and encrypt) a stream into the store."""

    store: Store
    backup_id: str
    suffix: str
    level: int
    recipients: list[Any] | None
    progress: Progress
    draft: Callable[[Snapshot], Manifest]  # the manifest's fields, for the identity seal

    def write(
        self, base: str, role: str, stream: IO[bytes], total: int | None, snap: Snapshot
    ) -> DataFile:
        """Encrypted files carry the digest of the manifest's bound fields after the data
        (codec.seal_frame), computed once the stream is read (PostgreSQL's counts come
        with the snapshot, before the stream)."""
        name = f"{base}{self.suffix}"
        with self.store.writer(f"{self.backup_id}/{name}") as sink:
            enc = encode(
                stream,
                sink,
                level=self.level,
                recipients=self.recipients,
                progress=self.progress,
                phase="compress",
                total=total,
                seal=lambda: self.draft(snap).bound_digest(),
            )
        return DataFile(
            name=name,
            role=role,
            size=enc.size,
            sha256=enc.sha256,
            raw_size=enc.raw_size,
            compression="zstd",
            compression_level=self.level,
            encryption="age" if self.recipients else None,
            recipients=[str(r) for r in self.recipients or []],
        )


def _sqlite(path: Path, scratch: Path | None, data: _Data, files: list[DataFile]) -> Snapshot:
    """Stream a consistent image (see :func:`use_sqlite_snapshot`)."""

    def write(snap: Snapshot) -> DataFile:
        assert snap.stream is not None
        return data.write("database.sqlite", "database", snap.stream, snap.size, snap)

    snap, file = use_sqlite_snapshot(path, scratch, write, data.progress)
    files.append(file)
    return snap


def _postgres(db: Any, data: _Data, files: list[DataFile]) -> Snapshot:
    from emrops.backup.pgdump import pg_globals, postgres_snapshot

    with postgres_snapshot(db) as snap:
        assert snap.stream is not None
        files.append(data.write("database.pgdump", "database", snap.stream, None, snap))
    roles, reason = pg_globals(db)
    snap.engine_info["globals"] = reason
    if roles is not None:
        files.append(data.write("globals.sql", "globals", io.BytesIO(roles), len(roles), snap))
    return snap


def pin_record(backup_id: str, reason: str) -> bytes:
    record = {
        "backup_id": backup_id,
        "pinned_at": iso_utc(),
        "reason": reason,
        "host": socket.gethostname(),
    }
    return (json.dumps(record) + "\n").encode()
