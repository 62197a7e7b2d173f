"""``backup run``: snapshot -> zstd [-> age] -> store, manifest last."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops import __version__
from emrops.backup import crypto
from emrops.backup.codec import Progress, _noop, encode
from emrops.backup.lock import Warn
from emrops.backup.manifest import MANIFEST, PIN, DataFile, Manifest, new_backup_id
from emrops.backup.snapshot import pg_globals, postgres_snapshot, sqlite_snapshot
from emrops.backup.stores import Store
from emrops.db.engine import parse_db_url
from emrops.logs import get_logger, iso_utc

log = get_logger(__name__)


@dataclass
class RunOptions:
    db_url: str
    label: str = ""
    pin: bool = False
    encrypt: bool = False
    recipients: str | None = None  # age1... keys, comma separated
    level: int = 3
    scratch_dir: Path | None = None


def run_backup(
    store: Store, opts: RunOptions, progress: Progress = _noop, warn: Warn | None = None
) -> Manifest:
    """Take one backup under the store lock and return its manifest.

    Raises Busy when another run holds the lock, UsageError/DatabaseError for a bad source,
    EmropsError when the store cannot be written; nothing is published in those cases.
    """
    recipients = crypto.parse_recipients(opts.recipients) if opts.encrypt else None
    with store.lock("backup run", warn):
        return run_locked(store, opts, recipients, progress)


def run_locked(
    store: Store, opts: RunOptions, recipients: list[Any] | None, progress: Progress = _noop
) -> Manifest:
    """The backup itself; the caller holds the store lock (restore takes safety backups so)."""
    db = parse_db_url(opts.db_url)
    removed = store.cleanup()
    if removed:
        log.info("removed %d leftover(s) of interrupted runs: %s", len(removed), ", ".join(removed))
    backup_id = new_backup_id()
    started = time.monotonic()
    created_at = iso_utc()
    suffix = ".zst.age" if recipients else ".zst"
    files: list[DataFile] = []
    try:
        if db.engine_name == "sqlite":
            progress("snapshot", 0, None)
            with sqlite_snapshot(db, opts.scratch_dir) as snap:
                assert snap.path is not None
                total = snap.path.stat().st_size
                name = f"database.sqlite{suffix}"
                with snap.path.open("rb") as source, store.writer(f"{backup_id}/{name}") as sink:
                    enc = encode(
                        source,
                        sink,
                        level=opts.level,
                        recipients=recipients,
                        progress=progress,
                        phase="compress",
                        total=total,
                    )
                files.append(_file(name, "database", enc, opts.level, recipients))
        else:
            progress("snapshot", 0, None)
            with postgres_snapshot(db) as snap:
                assert snap.stream is not None
                name = f"database.pgdump{suffix}"
                with store.writer(f"{backup_id}/{name}") as sink:
                    enc = encode(
                        snap.stream,
                        sink,
                        level=opts.level,
                        recipients=recipients,
                        progress=progress,
                        phase="compress",
                    )
            files.append(_file(name, "database", enc, opts.level, recipients))
            roles, reason = pg_globals(db)
            snap.engine_info["globals"] = reason
            if roles is not None:
                import io

                gname = f"globals.sql{suffix}"
                with store.writer(f"{backup_id}/{gname}") as sink:
                    genc = encode(io.BytesIO(roles), sink, level=opts.level, recipients=recipients)
                files.append(_file(gname, "globals", genc, opts.level, recipients))
        manifest = Manifest(
            id=backup_id,
            created_at=created_at,
            engine=db.engine_name,
            source=db.masked(),
            schema_revision=snap.schema_revision,
            row_counts=snap.row_counts,
            files=files,
            tool_version=__version__,
            host=socket.gethostname(),
            label=opts.label,
            duration_s=round(time.monotonic() - started, 3),
            engine_info=snap.engine_info,
        )
        progress("publish", 0, None)
        if opts.pin:  # the pin goes first: once the manifest exists, the backup is complete
            store.write_bytes(f"{backup_id}/{PIN}", pin_record("pinned at backup time"))
        store.write_bytes(f"{backup_id}/{MANIFEST}", manifest.to_json())
    except BaseException:
        with contextlib.suppress(Exception):
            store.delete_backup(backup_id)
        raise
    log.info("backup %s published to %s (%d bytes)", backup_id, store.url, manifest.size)
    return manifest


def _file(name: str, role: str, enc: Any, level: int, recipients: list[Any] | None) -> DataFile:
    return DataFile(
        name=name,
        role=role,
        size=enc.size,
        sha256=enc.sha256,
        raw_size=enc.raw_size,
        compression="zstd",
        compression_level=level,
        encryption="age" if recipients else None,
        recipients=[str(r) for r in recipients or []],
    )


def pin_record(reason: str) -> bytes:
    return (
        json.dumps({"pinned_at": iso_utc(), "reason": reason, "host": socket.gethostname()}) + "\n"
    ).encode()
