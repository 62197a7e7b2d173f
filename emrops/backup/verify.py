"""``backup verify``: checksum, decrypt, decompress, restore into scratch, check, record.

A verification fails (exit 3) when anything does not hold: the stored size or SHA-256, the
age decryption, the zstd frame (with its content checksum), ``PRAGMA integrity_check`` and
``foreign_key_check`` (SQLite) or ``pg_restore`` into a scratch database (PostgreSQL), and
the row count of every table against the manifest. The result is written to
``<id>/verification.json`` (rotate counts only verified backups).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyrage
import zstandard

from emrops import __version__
from emrops.backup import crypto
from emrops.backup.codec import HashingReader, Progress, _noop, decode
from emrops.backup.lock import Warn
from emrops.backup.manifest import (
    MANIFEST,
    VERIFICATION,
    Check,
    DataFile,
    Manifest,
    Verification,
    check_id,
)
from emrops.backup.snapshot import sqlite_facts
from emrops.backup.stores import NotFound, Store
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import CheckFailed, UsageError
from emrops.logs import iso_utc
from emrops.scratch import scratch_dir as per_run_dir


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(Check(name, ok, detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.items)


def load_manifest(store: Store, backup_id: str) -> Manifest:
    """The manifest of a published backup; NotFound (exit 1) when there is none."""
    check_id(backup_id)
    try:
        data = store.read_bytes(f"{backup_id}/{MANIFEST}")
    except NotFound:
        raise NotFound(
            f"backup {backup_id} not found in {store.url}", hint="see `emrops backup list`"
        ) from None
    return Manifest.from_json(data, f"{backup_id}/{MANIFEST}")


def materialize(
    store: Store,
    manifest: Manifest,
    item: DataFile,
    sink: IO[bytes],
    checks: Checks,
    progress: Progress = _noop,
) -> bool:
    """Read one stored file, check size + SHA-256, decrypt and decompress it into ``sink``."""
    name = f"{manifest.id}/{item.name}"
    identities = crypto.load_identities(manifest.id) if item.encryption else None
    decode_error = None
    try:
        with store.open_read(name) as stream:
            reader = HashingReader(stream, progress, "verify", item.size)
            try:
                decode(reader, sink, identities=identities)
            except pyrage.DecryptError as exc:
                decode_error = ("decrypt " + item.name, f"cannot decrypt: {exc}")
            except zstandard.ZstdError as exc:
                decode_error = ("decompress " + item.name, f"cannot decompress: {exc}")
            reader.drain()
    except NotFound:
        return checks.add(f"checksum {item.name}", False, f"{item.name} is missing from the store")
    digest = reader.sha.hexdigest()
    if reader.size != item.size or digest != item.sha256:
        return checks.add(
            f"checksum {item.name}",
            False,
            f"stored {reader.size} bytes with SHA-256 {digest[:12]}..., manifest says "
            f"{item.size} bytes with {item.sha256[:12]}...",
        )
    checks.add(f"checksum {item.name}", True, f"{item.size} bytes, SHA-256 {digest[:12]}...")
    if decode_error:
        if "decrypt" in decode_error[0] and "No matching keys" in decode_error[1]:
            # A key problem, not damage: nothing is recorded, so rotate keeps trusting the backup.
            raise CheckFailed(
                f"cannot decrypt backup {manifest.id}: {crypto.IDENTITY_ENV} does not match its "
                f"recipient {', '.join(item.recipients)}",
                hint=f"set {crypto.IDENTITY_ENV} to the identity of that recipient",
            )
        return checks.add(decode_error[0], False, decode_error[1])
    return True


def check_counts(expected: dict[str, int], actual: dict[str, int], checks: Checks) -> None:
    wrong = [
        f"{t}: {actual.get(t, 'missing')} (manifest {n})"
        for t, n in sorted(expected.items())
        if actual.get(t) != n
    ]
    total = sum(expected.values())
    checks.add("row counts", not wrong, "; ".join(wrong) or f"{len(expected)} tables, {total} rows")


def check_sqlite(path: Path, manifest: Manifest, checks: Checks) -> None:
    """integrity_check, foreign_key_check and row counts, each on its own connection in
    parallel (sqlite3 releases the GIL while a statement runs)."""

    def query(sql: str) -> list[Any]:
        conn = open_sqlite(path, mode="rw")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def counts() -> dict[str, int]:
        conn = open_sqlite(path, mode="rw")
        try:
            return sqlite_facts(conn)[0]
        finally:
            conn.close()

    with ThreadPoolExecutor(3) as pool:
        integrity = pool.submit(query, "PRAGMA integrity_check")
        fk = pool.submit(query, "PRAGMA foreign_key_check")
        rows = pool.submit(counts)
        try:
            problems = [r[0] for r in integrity.result()]
            checks.add("integrity_check", problems == ["ok"], "; ".join(problems[:5]))
            fks = fk.result()
            checks.add("foreign_key_check", not fks, f"{len(fks)} violation(s)" if fks else "ok")
            actual = rows.result()
        except sqlite3.DatabaseError as exc:
            checks.add("integrity_check", False, str(exc))
            return
    check_counts(manifest.row_counts, actual, checks)


def verify_files(
    store: Store,
    manifest: Manifest,
    checks: Checks,
    *,
    scratch: Path,
    pg_server: str | None,
    progress: Progress = _noop,
) -> None:
    """Every check of one backup; the database is left decoded at ``scratch``."""
    for item in manifest.files:
        if item.role == "database":
            with scratch.open("wb") as sink:  # a scratch file: no fsync needed
                ok = materialize(store, manifest, item, sink, checks, progress)
            if not ok:
                continue
            progress("check", 0, None)
            if manifest.engine == "sqlite":
                check_sqlite(scratch, manifest, checks)
            else:
                if not pg_server:
                    raise UsageError(
                        f"backup {manifest.id} is a PostgreSQL backup: verify restores it into a "
                        "scratch database and needs a server for that",
                        hint="pass --db postgresql+psycopg://user@host/db (or set EMROPS_DB_URL)",
                    )
                from emrops.backup.pgverify import check_postgres

                check_postgres(scratch, manifest, pg_server, checks)
        else:
            with open(os.devnull, "wb") as sink:
                materialize(store, manifest, item, sink, checks, progress)


def record(store: Store, manifest: Manifest, checks: Checks, started: float) -> Verification:
    """Write ``<id>/verification.json`` (the newest result, earlier ones in history)."""
    history: list[dict[str, Any]] = []
    with contextlib.suppress(NotFound):
        old = Verification.from_json(store.read_bytes(f"{manifest.id}/{VERIFICATION}"))
        if old:
            history = [{"verified_at": old.verified_at, "ok": old.ok}, *old.history][:20]
    result = Verification(
        backup_id=manifest.id,
        verified_at=iso_utc(),
        ok=checks.ok,
        checks=checks.items,
        duration_s=round(time.monotonic() - started, 3),
        tool_version=__version__,
        history=history,
    )
    store.write_bytes(f"{manifest.id}/{VERIFICATION}", result.to_json())
    return result


def verify_locked(
    store: Store,
    backup_id: str,
    *,
    pg_server: str | None = None,
    scratch_dir: Path | None = None,
    progress: Progress = _noop,
) -> Verification:
    """Verify one backup (caller holds the lock); records and returns the result."""
    started = time.monotonic()
    checks = Checks()
    try:
        manifest = load_manifest(store, backup_id)
    except CheckFailed as exc:
        raise CheckFailed(f"verification of {backup_id} failed: {exc.message}") from exc
    with per_run_dir(scratch_dir, "emrops-verify-") as tmp:
        verify_files(
            store,
            manifest,
            checks,
            scratch=tmp / "scratch",
            pg_server=pg_server,
            progress=progress,
        )
    return record(store, manifest, checks, started)


def verify_backups(
    store: Store,
    ids: list[str],
    *,
    pg_server: str | None = None,
    scratch_dir: Path | None = None,
    progress: Progress = _noop,
    warn: Warn | None = None,
    latest: bool = False,
) -> list[Verification]:
    """Verify each id (none: the newest if ``latest``, else all) under one store lock.

    Returns every result, failed ones included; :func:`raise_failures` turns those into exit 3.
    """
    if not store.backup_ids():  # before the lock: verifying a missing store creates nothing
        raise UsageError(f"no backups in {store.url}", hint="check --store")
    with store.lock("backup verify", warn):
        if not ids:
            complete = store.complete_ids()
            if not complete:
                raise UsageError(
                    f"no backups in {store.url}", hint="take one with `emrops backup run`"
                )
            ids = complete[-1:] if latest else complete
        return [
            verify_locked(store, i, pg_server=pg_server, scratch_dir=scratch_dir, progress=progress)
            for i in ids
        ]


def raise_failures(results: list[Verification]) -> None:
    failed = [r for r in results if not r.ok]
    if failed:
        parts = [
            f"{r.backup_id}: " + "; ".join(f"{c.name}: {c.detail}" for c in r.failed)
            for r in failed
        ]
        raise VerificationFailed("verification failed for " + " | ".join(parts), results)


class VerificationFailed(CheckFailed):
    """Exit 3; carries every result so --json can still print them."""

    def __init__(self, message: str, results: list[Verification]):
        super().__init__(message, hint="restore another backup, and find out what damaged this one")
        self.results = results
