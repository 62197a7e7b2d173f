"""``backup verify``: checksum, decrypt, decompress, restore into scratch, check, record.

A verification fails (exit 3) when anything does not hold: the stored size or SHA-256, the
age decryption, the zstd frame (with its content checksum), ``PRAGMA integrity_check`` and
``foreign_key_check`` (SQLite) or ``pg_restore`` into a scratch database (PostgreSQL), and
the row count of every table against the manifest. The result is written to
``<id>/verification.json`` (rotate counts only verified backups).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar, cast

import pyrage
import zstandard

from emrops import __version__
from emrops.backup import crypto
from emrops.backup.codec import HashingReader, Progress, decode, no_progress
from emrops.backup.integrity import integrity_problems
from emrops.backup.lock import Warn
from emrops.backup.manifest import (
    ID_PATTERN,
    MANIFEST,
    MAX_DOCUMENT,
    VERIFICATION,
    Check,
    DataFile,
    Manifest,
    NewerFormat,
    Verification,
    check_id,
    id_time,
)
from emrops.backup.retention import FUTURE_SLACK
from emrops.backup.snapshot import lenient_text, sqlite_facts
from emrops.backup.sources import Source, matches
from emrops.backup.stores import (
    FULL_ERRNOS,
    NotAFile,
    NotFound,
    Offline,
    OutsideStore,
    Store,
)
from emrops.db.sqlite_file import (
    SCHEMA_PARSE_HINT,
    open_sqlite,
    schema_parse_error,
    schema_parse_text,
)
from emrops.errors import CheckFailed, EmropsError, UsageError
from emrops.logs import get_logger, iso_utc
from emrops.scratch import scratch_dir as per_run_dir

log = get_logger(__name__)
T = TypeVar("T")


@dataclass
class Checks:
    items: list[Check] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append(Check(name, ok, detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.items)


class NewerSchema(EmropsError):
    """The backup's schema uses syntax of a newer SQLite than this one (the manifest says which
    wrote it): it cannot be checked here, which says nothing against it (exit 1, nothing
    recorded, never marked failed)."""


def _newer_schema(manifest: Manifest, exc: BaseException) -> NewerSchema | None:
    """NewerSchema when ``exc`` is a schema parse error and the backup was taken with a newer
    SQLite than this one. With the same or an older one it was parsed when the backup was
    taken (its row counts needed the schema), so then it is damage: None."""
    parse = schema_parse_error(exc)
    wrote = manifest.engine_info.get("sqlite_version")
    if (
        parse is None
        or not isinstance(wrote, str)
        or _version(wrote) <= _version(sqlite3.sqlite_version)
    ):
        return None
    return NewerSchema(
        f"cannot check backup {manifest.id} here: it was taken with SQLite {wrote}, and "
        f"{schema_parse_text(parse)}; nothing was recorded about the backup, and nothing "
        "restored from it",
        hint=f"{SCHEMA_PARSE_HINT} (here: at least {wrote}, which took the backup)",
    )


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in text.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        parts.append(int(digits or 0))
    return tuple(parts)


class ScratchFull(EmropsError):
    """The scratch folder filled up while a backup was decoded or checked: nothing is known
    about the backup (exit 1, nothing recorded), it is never marked failed."""


@contextlib.contextmanager
def scratch_space(folder: Path, what: str) -> Iterator[None]:
    """Turn a full disk under ``folder`` (an OSError, or SQLite's SQLITE_FULL) into
    ScratchFull naming the folder."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in FULL_ERRNOS:
            raise
        raise _full(folder, what, exc.strerror or str(exc)) from exc
    except sqlite3.OperationalError as exc:
        if "disk is full" not in str(exc):
            raise
        raise _full(folder, what, str(exc)) from exc


def _full(folder: Path, what: str, detail: str) -> ScratchFull:
    return ScratchFull(
        f"cannot {what}: the scratch folder {folder} is full ({detail}); nothing was recorded "
        "about the backup",
        hint="free space there, or point TMPDIR at a folder with room for the decoded "
        "database (about its raw size)",
    )


def load_manifest(store: Store, backup_id: str) -> Manifest:
    """The manifest of a published backup; NotFound (exit 1) when there is none."""
    check_id(backup_id)
    try:
        data = store.read_bytes(f"{backup_id}/{MANIFEST}", limit=MAX_DOCUMENT)
    except NotFound:
        raise NotFound(
            f"backup {backup_id} not found in {store.url}", hint="see `emrops backup list`"
        ) from None
    return Manifest.from_json(data, f"{backup_id}/{MANIFEST}", folder=backup_id)


def materialize(
    store: Store,
    manifest: Manifest,
    item: DataFile,
    sink: IO[bytes],
    checks: Checks,
    progress: Progress = no_progress,
) -> bool:
    """Read one stored file, check size + SHA-256, decrypt and decompress it into ``sink``.

    Damage (size/SHA-256, an age header or payload that does not decrypt with the right
    identity, a zstd error) is a failed check. A missing identity, or one that is not a
    recipient of the backup, raises crypto.IdentityProblem (exit 1, nothing to record) once
    the stored bytes have been checked: a checksum mismatch is reported as damage even then.
    """
    name = f"{manifest.id}/{item.name}"
    identities = None
    key_problem: crypto.IdentityProblem | None = None
    if item.encryption:
        try:
            identities = crypto.load_identities(manifest.id)
            if item.recipients and not crypto.recipients_of(identities) & set(item.recipients):
                raise crypto.IdentityProblem(
                    f"cannot decrypt backup {manifest.id}: {crypto.IDENTITY_ENV} does not match "
                    f"its recipient {', '.join(item.recipients)}",
                    hint=f"set {crypto.IDENTITY_ENV} to the identity of that recipient",
                )
        except crypto.IdentityProblem as exc:
            key_problem, identities = exc, None
    decode_error = None
    seal = None
    try:
        with store.open_read(name) as stream:
            capped = cast(IO[bytes], _Capped(stream, item.size))
            reader = HashingReader(capped, progress, "verify", item.size)
            if key_problem is None:
                try:
                    out = cast(IO[bytes], _Capped(sink, item.raw_size))
                    seal = decode(reader, out, identities=identities)
                except Oversize as exc:
                    if exc.stored:
                        raise
                    # the stored bytes may still match (then the manifest's raw size is wrong)
                    decode_error = ("decompress " + item.name, str(exc))
                except pyrage.DecryptError as exc:
                    if "No matching keys" in str(exc) and not item.recipients:
                        # no recipient recorded to tell a wrong key from a damaged header:
                        # count it as a key problem, never as damage
                        key_problem = crypto.IdentityProblem(
                            f"cannot decrypt backup {manifest.id}: {crypto.IDENTITY_ENV} is not "
                            "an identity it was encrypted to",
                            hint=f"set {crypto.IDENTITY_ENV} to the identity of its recipient",
                        )
                    else:
                        decode_error = (
                            "decrypt " + item.name,
                            f"cannot decrypt: {_one_line(exc)}",
                        )
                except zstandard.ZstdError as exc:
                    decode_error = ("decompress " + item.name, f"cannot decompress: {exc}")
                except OSError as exc:
                    if not item.encryption or _store_error(exc):
                        raise
                    # pyrage's own error for a payload chunk that fails its MAC or is cut short
                    decode_error = ("decrypt " + item.name, f"cannot decrypt: {_one_line(exc)}")
            reader.drain()
    except Oversize as exc:
        return checks.add(f"checksum {item.name}", False, f"{exc}, manifest says {item.size}")
    except NotFound:
        return checks.add(f"checksum {item.name}", False, f"{item.name} is missing from the store")
    except (NotAFile, OutsideStore) as exc:  # damage: a link to elsewhere is never followed
        return checks.add(f"checksum {item.name}", False, exc.message)
    digest = reader.sha.hexdigest()
    if reader.size != item.size or digest != item.sha256:
        return checks.add(
            f"checksum {item.name}",
            False,
            f"stored {reader.size} bytes with SHA-256 {digest[:12]}..., manifest says "
            f"{item.size} bytes with {item.sha256[:12]}...",
        )
    checks.add(f"checksum {item.name}", True, f"{item.size} bytes, SHA-256 {digest[:12]}...")
    if key_problem is not None:
        raise key_problem
    if decode_error:
        return checks.add(decode_error[0], False, decode_error[1])
    if item.encryption:
        check_bound_seal(manifest, item, seal, checks)
    return True


class Oversize(Exception):
    """More bytes than the manifest records, stored or decoded: damage, found before a
    swapped blob or a decompression bomb fills the scratch disk (it would read as "scratch
    folder full", exit 1, instead of a failed check)."""

    def __init__(self, limit: int, stored: bool):
        what = "stored" if stored else "decodes to"
        super().__init__(f"{what} more than {limit} bytes")
        self.stored = stored


class _Capped:
    """A source read from, or a sink written to, that raises Oversize past ``limit`` bytes."""

    def __init__(self, inner: Any, limit: int):
        self.inner, self.limit, self.count = inner, limit, 0

    def _add(self, n: int, stored: bool) -> None:
        self.count += n
        if self.count > self.limit:
            raise Oversize(self.limit, stored)

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.inner.read(n)
        self._add(len(data), stored=True)
        return data

    def write(self, data: Any) -> int:
        size = len(memoryview(data))
        self._add(size, stored=False)
        self.inner.write(data)
        return size

    def flush(self) -> None:
        self.inner.flush()


def check_bound_seal(
    manifest: Manifest, item: DataFile, seal: bytes | None, checks: Checks
) -> None:
    """The manifest digest carried inside the encrypted stream must match the manifest."""
    if seal is None:
        checks.add(
            f"identity seal {item.name}",
            True,
            "warning: written before manifests were sealed inside the encrypted stream",
        )
        return
    ok = seal == manifest.bound_digest()
    checks.add(
        f"identity seal {item.name}",
        ok,
        "the manifest matches the digest inside the encrypted stream"
        if ok
        else "the manifest does not match the digest inside the encrypted stream: "
        "a field of the manifest was changed",
    )


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _store_error(exc: OSError) -> bool:
    """An OSError from the store or the scratch disk (it has an errno), not from pyrage."""
    return exc.errno is not None


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

    def on_own_connection(work: Callable[[sqlite3.Connection], T]) -> T:
        conn = open_sqlite(path, mode="rw")
        conn.text_factory = lenient_text  # names in messages need not be UTF-8
        try:
            return work(conn)
        finally:
            conn.close()

    uncheckable = (
        "foreign_key_violations" in manifest.engine_info
        and manifest.engine_info["foreign_key_violations"] is None
    )  # the source's schema has a foreign key SQLite cannot check
    recorded = manifest.engine_info.get("foreign_key_violations", 0)
    if not isinstance(recorded, int) or isinstance(recorded, bool):
        recorded = 0  # engine_info is not in the schema's checked part: treat junk as none

    with ThreadPoolExecutor(3) as pool:
        # integrity_problems stands in for the application's own collations and functions
        integrity = pool.submit(on_own_connection, integrity_problems)
        fk = pool.submit(
            on_own_connection, lambda c: c.execute("PRAGMA foreign_key_check").fetchall()
        )
        rows = pool.submit(on_own_connection, lambda c: sqlite_facts(c)[0])
        try:
            found = integrity.result()
            checks.add("integrity_check", found.ok, found.detail())
            try:
                fks = fk.result()
            except sqlite3.DatabaseError as exc:
                if not (uncheckable and "foreign key mismatch" in str(exc)):
                    raise
                checks.add("foreign_key_check", True, f"not checkable, as in the source: {exc}")
                fks = None
            if fks is None:
                pass
            elif not fks:
                checks.add("foreign_key_check", True, "ok")
            elif len(fks) == recorded:
                checks.add("foreign_key_check", True, f"{len(fks)} violation(s), as in the source")
            else:
                checks.add(
                    "foreign_key_check",
                    False,
                    f"{len(fks)} violation(s), the source had {recorded}",
                )
            actual = rows.result()
        except sqlite3.DatabaseError as exc:
            if "disk is full" in str(exc):
                raise  # the scratch disk, not the backup (see scratch_space)
            newer = _newer_schema(manifest, exc)
            if newer is not None:
                raise newer from exc
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
    progress: Progress = no_progress,
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


def check_seal(manifest: Manifest, checks: Checks) -> None:
    """The manifest's own checksum (``seal``) over its canonical form."""
    if manifest.seal_valid is None:
        checks.add("manifest seal", True, "warning: unsealed (written before manifests had seals)")
    elif manifest.seal_valid:
        checks.add("manifest seal", True, "the manifest matches its seal")
    else:
        checks.add(
            "manifest seal", False, "a field of the manifest was changed after it was sealed"
        )


def record(store: Store, manifest: Manifest, checks: Checks, started: float) -> Verification:
    """Write ``<id>/verification.json`` (the newest result, earlier ones in history)."""
    return _record(store, manifest.id, manifest.seal, checks, started)


def _record(
    store: Store, backup_id: str, seal: str | None, checks: Checks, started: float
) -> Verification:
    history: list[dict[str, Any]] = []
    with contextlib.suppress(NotFound, CheckFailed, OutsideStore, Offline):
        data = store.read_bytes(f"{backup_id}/{VERIFICATION}", limit=MAX_DOCUMENT)
        old = Verification.from_json(data, backup_id)
        history = [{"verified_at": old.verified_at, "ok": old.ok}, *old.history][:20]
    result = Verification(
        backup_id=backup_id,
        verified_at=iso_utc(),
        ok=checks.ok,
        checks=checks.items,
        duration_s=round(time.monotonic() - started, 3),
        tool_version=__version__,
        history=history,
        manifest_seal=seal,
    )
    try:
        store.write_bytes(f"{backup_id}/{VERIFICATION}", result.to_json())
    except EmropsError as exc:
        # A store that cannot take the record (read-only, another user's, full) still has
        # the backup: the result stands for this run (a restore from a full store goes on).
        unwritable = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT)
        if not (isinstance(exc.__cause__, OSError) and exc.__cause__.errno in unwritable):
            raise
        log.warning(
            "verification of %s not recorded: the store cannot be written here (%s)",
            backup_id,
            exc.__cause__.strerror,
        )
    return result


@dataclass
class Unchecked:
    """A backup that could not be checked (e.g. no identity for an encrypted backup): exit 1,
    nothing recorded."""

    backup_id: str
    reason: str
    hint: str | None = None
    ok: None = None


def verify_locked(
    store: Store,
    backup_id: str,
    *,
    pg_server: str | None = None,
    scratch_dir: Path | None = None,
    progress: Progress = no_progress,
) -> Verification:
    """Verify one backup (caller holds the lock); records and returns the result.

    An invalid manifest is a failed verification (recorded); a missing or wrong identity
    raises crypto.IdentityProblem (nothing recorded)."""
    started = time.monotonic()
    checks = Checks()
    try:
        manifest = load_manifest(store, backup_id)
    except NewerFormat:
        raise  # not checkable here, not damage: never recorded as failed
    except (CheckFailed, UsageError) as exc:
        checks.add("manifest", False, exc.message)
        if ID_PATTERN.fullmatch(backup_id):
            return _record(store, backup_id, None, checks, started)
        return Verification(backup_id, iso_utc(), False, checks.items, 0.0, __version__)
    check_seal(manifest, checks)
    if not checks.ok:  # a changed manifest is not followed (engine, file names, counts)
        return record(store, manifest, checks, started)
    with (
        per_run_dir(scratch_dir, "emrops-verify-") as tmp,
        scratch_space(tmp, f"verify backup {backup_id}"),
    ):
        verify_files(
            store,
            manifest,
            checks,
            scratch=tmp / "scratch",
            pg_server=pg_server,
            progress=progress,
        )
    return record(store, manifest, checks, started)


def select_ids(store: Store, source: Source | None, *, latest: bool) -> list[str]:
    """Ids of ``source``'s backups (all sources when None), oldest first; the newest only
    if ``latest``. A backup whose manifest is invalid belongs to no source, but is kept in
    the list for ``--all`` when no source is given (so it is reported as failed)."""
    every = store.complete_ids()
    complete = every
    if source is not None:
        complete = [i for i in complete if _of_source(store, i, source)]
    if latest:
        valid = [i for i in complete if _valid(store, i)]
        _warn_skipped_newer(store, every, valid[-1] if valid else None)
        return valid[-1:]
    return complete


def _warn_skipped_newer(store: Store, ids: list[str], chosen: str | None) -> None:
    """--latest takes the newest backup it can use; say so when newer ones were passed over
    (a manifest of a newer emrops, damaged or changed: their source cannot be told), so that
    restoring older data than the store holds is never silent."""
    skipped = []
    for backup_id in ids:
        if chosen is not None and backup_id <= chosen:
            continue
        try:
            manifest = load_manifest(store, backup_id)
        except (CheckFailed, UsageError, Offline) as exc:
            skipped.append(f"{backup_id} ({exc.message})")
            continue
        if manifest.seal_valid is False:
            skipped.append(f"{backup_id} (its manifest does not match its seal)")
    if skipped:
        took = f"it takes {chosen}" if chosen else "none is left"
        log.warning(
            "--latest passes over %d newer backup(s) whose manifest cannot be used here, of "
            "any source: %s; %s",
            len(skipped),
            "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else ""),
            took,
        )


def latest_id(store: Store, source: Source | None) -> str:
    """The newest backup with a valid manifest of ``source`` (any source when None)."""
    ids = select_ids(store, source, latest=True)
    if not ids:
        of = f" of {source.describe()}" if source is not None else ""
        raise UsageError(
            f"no backups{of} in {store.url}",
            hint="see `emrops backup list`"
            + (" (--source all: of any database)" if source is not None else ""),
        )
    newest = ids[0]
    moment = id_time(newest)
    ahead = (moment - datetime.now(UTC)).total_seconds() if moment is not None else 0.0
    if ahead > FUTURE_SLACK.total_seconds():
        # its clock was ahead when it was taken (another host, or this one stepped back
        # since): "newest" by that date may be older than backups taken after it, and
        # restoring it would bring back stale data while the user expects the last one
        raise UsageError(
            f"the newest backup by date, {newest}, is dated {round(ahead / 60)} minute(s) in "
            "the future: a clock was wrong when it (or the later ones) was taken, so which "
            "backup is really the latest cannot be told from the dates",
            hint="look at `emrops backup list` and name the backup to restore; fix the "
            "clocks (NTP)",
        )
    return newest


def _manifest_or_none(store: Store, backup_id: str) -> Manifest | None:
    try:
        return load_manifest(store, backup_id)
    except (CheckFailed, UsageError, Offline):
        return None


def _valid(store: Store, backup_id: str) -> bool:
    manifest = _manifest_or_none(store, backup_id)
    return manifest is not None and manifest.seal_valid is not False


def _of_source(store: Store, backup_id: str, source: Source) -> bool:
    manifest = _manifest_or_none(store, backup_id)
    return manifest is not None and matches(manifest, source)


def verify_backups(
    store: Store,
    ids: list[str],
    *,
    pg_server: str | None = None,
    scratch_dir: Path | None = None,
    progress: Progress = no_progress,
    warn: Warn | None = None,
    latest: bool = False,
    source: Source | None = None,
) -> list[Verification | Unchecked]:
    """Verify each id (none: the newest of ``source`` if ``latest``, else all of it) under
    one store lock. Goes on past every failure: returns every result, failed and unchecked
    ones included; :func:`raise_failures` turns those into exit 3 / exit 1.
    """
    if not store.backup_ids():  # before the lock: verifying a missing store creates nothing
        raise UsageError(f"no backups in {store.url}", hint="check --store")
    with store.lock("backup verify", warn, read_only_ok=True):
        if not ids:
            ids = select_ids(store, source, latest=latest)
            if not ids:
                of = f" of {source.describe()}" if source is not None else ""
                raise UsageError(
                    f"no backups{of} in {store.url}",
                    hint="take one with `emrops backup run`"
                    + (", or pass --source all" if source is not None else ""),
                )
        results: list[Verification | Unchecked] = []
        for backup_id in ids:
            try:
                results.append(
                    verify_locked(
                        store,
                        backup_id,
                        pg_server=pg_server,
                        scratch_dir=scratch_dir,
                        progress=progress,
                    )
                )
            except (crypto.IdentityProblem, ScratchFull, Offline, NewerSchema, NewerFormat) as exc:
                results.append(Unchecked(backup_id, exc.message, exc.hint))
        return results


def raise_failures(results: list[Verification | Unchecked]) -> None:
    """Exit 3 if any backup failed, else exit 1 if any could not be checked."""
    failed = [r for r in results if isinstance(r, Verification) and not r.ok]
    if failed:
        parts = [f"{r.backup_id}: {r.reason}" for r in failed]
        raise VerificationFailed("verification failed for " + " | ".join(parts), results)
    unchecked = [r for r in results if isinstance(r, Unchecked)]
    if len(unchecked) == 1 and len(results) == 1:
        raise crypto.IdentityProblem(unchecked[0].reason, hint=unchecked[0].hint)
    if unchecked:
        raise crypto.IdentityProblem(
            f"{len(unchecked)} of {len(results)} backups could not be checked: "
            + " | ".join(f"{r.backup_id}: {r.reason}" for r in unchecked),
            hint=unchecked[0].hint,
        )


class VerificationFailed(CheckFailed):
    """Exit 3; carries every result so --json can still print them."""

    def __init__(self, message: str, results: list[Verification | Unchecked]):
        super().__init__(message, hint="restore another backup, and find out what damaged this one")
        self.results = results
