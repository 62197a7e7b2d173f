"""Backup stores: a local folder or an Azure Blob Storage prefix, behind one interface.

Names inside a store are ``<backup id>/<file>``. Every write is atomic: a reader (and a
crash) sees either nothing or the complete object. :meth:`Store.cleanup` removes what a
crashed run left behind; call it only while holding the store lock.
"""

from __future__ import annotations

import contextlib
import errno
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from emrops.backup.lock import Holder
from emrops.backup.manifest import ID_PATTERN, MANIFEST, MAX_DOCUMENT, PIN, VERIFICATION
from emrops.errors import CheckFailed, EmropsError
from emrops.logs import get_logger

log = get_logger(__name__)

Warn = Callable[[str], None]

FULL_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class NotFound(EmropsError):
    """An object the caller expected is not in the store."""


class Offline(EmropsError):
    """An object the store holds but cannot read now (an Azure blob in the Archive tier):
    nothing is known about the backup (exit 1), it is never marked failed."""


class Store(ABC):
    """Where backups live. ``url`` is for display (never carries a secret)."""

    url: str

    @abstractmethod
    def backup_ids(self) -> list[str]:
        """Every id folder present, complete (with a manifest) or not, sorted."""

    @abstractmethod
    def names(self, backup_id: str) -> list[str]:
        """The file names (without the id prefix) stored for one backup: plain names only
        (something nested deeper under the id folder was not written by emrops)."""

    @abstractmethod
    def sizes(self, backup_id: str) -> dict[str, int]:
        """Size of each regular file stored for one backup (plain names only), in one listing:
        what list and rotate check a verified backup still holds."""

    @abstractmethod
    def exists(self, name: str) -> bool: ...

    @abstractmethod
    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """The whole object; raises NotFound, and TooLarge when it is over ``limit`` bytes
        (then at most ``limit + 1`` bytes were read)."""

    @abstractmethod
    def open_read(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary stream of the object; raises NotFound."""

    @abstractmethod
    def writer(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A binary sink published atomically when the block exits without an exception."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete one object (missing is fine)."""

    @abstractmethod
    def lock(
        self, operation: str, warn: Warn | None = None, *, read_only_ok: bool = False
    ) -> contextlib.AbstractContextManager[Holder]:
        """Exclusive store lock; raises Busy (exit 75) naming the holder. ``read_only_ok``: an
        operation that only reads the store (verify, restore, copy's source) goes on without
        the lock, with a warning, when the store is on a read-only file system (nothing can
        change it then)."""

    @abstractmethod
    def cleanup_staging(self) -> list[str]:
        """Remove half-written staging objects left by a crashed run; returns their names."""

    @property
    def identity(self) -> str:
        """What tells two stores apart: the same place reached by two spellings (a folder
        and a link to it) has one identity."""
        return self.url

    def holds_path(self, path: Path) -> bool:
        """Whether a local file path is inside the store (never for a store of blobs)."""
        return False

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.writer(name) as sink:
            sink.write(data)

    def delete_backup(self, backup_id: str) -> None:
        """Delete a backup: the manifest first, so a crash midway leaves only garbage, then
        its data files, then its records (verification, pin).

        Raises DeleteRefused when the store refuses to delete one object (an immutable blob,
        a file or folder that cannot be changed). When that is the backup's first data file,
        nothing of it is gone yet and the manifest is written back: the backup stays whole and
        listed (a refused delete never leaves a backup that can no longer be restored)."""
        manifest = f"{backup_id}/{MANIFEST}"
        try:
            saved: bytes | None = self.read_bytes(manifest, limit=MAX_DOCUMENT)
        except EmropsError:  # none (a crashed run's folder), or not a document emrops wrote
            saved = None
        self.delete(manifest)
        records = (VERIFICATION, PIN)
        rest = sorted(self.names(backup_id), key=lambda n: (n in records, n))
        for index, name in enumerate(rest):
            try:
                self.delete(f"{backup_id}/{name}")
            except DeleteRefused as exc:
                if index == 0 and saved is not None:
                    self.write_bytes(manifest, saved)
                    raise DeleteRefused(
                        f"{exc.message}; backup {backup_id} was left whole", hint=exc.hint
                    ) from exc
                raise DeleteRefused(
                    f"{exc.message}; backup {backup_id} is now incomplete (its manifest and "
                    f"{', '.join(rest[:index]) or 'no file'} were deleted)",
                    hint=exc.hint,
                ) from exc
        self.remove_folder(backup_id)

    def remove_folder(self, backup_id: str) -> None:  # noqa: B027 - only local folders exist
        """Remove the (empty) folder of a deleted backup, where the store has folders."""

    def complete_ids(self) -> list[str]:
        """Ids of published backups (those with a manifest), oldest first. A folder whose
        name is not a plain name (a backslash, a NUL) is skipped: no name under it is used."""
        out = []
        for backup_id in self.backup_ids():
            try:
                if self.exists(f"{backup_id}/{MANIFEST}"):
                    out.append(backup_id)
            except OutsideStore:
                continue
        return out

    def cleanup(self) -> list[str]:
        """Remove staging leftovers and id folders without a manifest (crashed runs).

        Only safe while holding the lock: a running backup has no manifest yet.
        """
        removed = self.cleanup_staging()
        refused: list[DeleteRefused] = []
        for backup_id in self.backup_ids():
            try:
                if ID_PATTERN.fullmatch(backup_id) and not self.exists(f"{backup_id}/{MANIFEST}"):
                    kept = _not_a_crashed_run(self.names(backup_id))
                    if kept:
                        log.warning(
                            "%s in %s has no %s but holds %s, which a run writes only after "
                            "its manifest (or which a later emrops wrote): left in place, not "
                            "removed as an interrupted run's leftover; restore its manifest, "
                            "or delete the folder by hand",
                            backup_id, self.url, MANIFEST, ", ".join(kept),
                        )  # fmt: skip
                        continue
                    self.delete_backup(backup_id)
                    removed.append(backup_id)
            except OutsideStore:
                continue  # a link to elsewhere named like an id: no run wrote it, left alone
            except DeleteRefused as exc:  # the others are still removed
                refused.append(exc)
        if refused:
            raise DeleteRefused(
                "; ".join(exc.message for exc in refused)
                + (f" (removed {', '.join(removed)})" if removed else ""),
                hint=refused[0].hint,
            )
        return removed


def _not_a_crashed_run(names: list[str]) -> list[str]:
    """The documents in a backup folder without a manifest that an interrupted run never
    leaves: a run writes its data files, then the manifest, and only then a verification or
    pin record. A folder holding one (its manifest deleted by hand, or named otherwise by a
    newer emrops) held a whole backup once, and its data files may still restore."""
    return sorted(n for n in names if n.endswith(".json"))


class DeleteRefused(EmropsError):
    """The store refused to delete (or overwrite) one object: an immutability policy or
    legal hold, a file or folder that cannot be changed. Other objects may still be deleted
    (exit 1)."""


class TooLarge(CheckFailed):
    """A stored document larger than any emrops writes: damage or a forgery, never read
    whole (exit 3)."""


def too_large(name: str, store: str, limit: int) -> TooLarge:
    return TooLarge(
        f"{name} in backup store {store} is larger than {limit // (1 << 20)} MiB: not a "
        "document emrops wrote (the store was damaged or changed)",
        hint="restore another backup; see `emrops backup list`",
    )


class NotAFile(CheckFailed):
    """Something other than a regular file (a folder, a FIFO) where a store file should be:
    damage, shown and verified as such (exit 3)."""


class OutsideStore(EmropsError):
    """A name that would resolve outside the store (forged manifest, hostile folder name)."""


def plain_part(part: str) -> bool:
    """One part of a store name: not empty, not "." or "..", no separator, backslash or NUL."""
    return part not in ("", ".", "..") and not any(c in part for c in "/\\\x00")


def check_name(name: str, store: str) -> str:
    """Refuse a name that is not ``<folder>/<file>`` (or one plain name) of plain parts: no
    empty part, no "." or "..", no backslash, no NUL, not absolute. Returns ``name``."""
    parts = name.split("/")
    if not 1 <= len(parts) <= 2 or not all(map(plain_part, parts)) or len(name) > 512:
        raise OutsideStore(
            f"refusing the name {name[:80]!r} in backup store {store}: it is not a plain "
            "<backup id>/<file> name inside the store",
            hint="a manifest or folder in the store was forged or damaged "
            "(see `emrops backup list`)",
        )
    return name


def write_error(store: str, exc: OSError) -> EmropsError:
    """A clear message for a failed write; a full disk gets its own hint."""
    if exc.errno in FULL_ERRNOS:
        return EmropsError(
            f"backup store {store} is full: {exc.strerror}; nothing was published",
            hint="free space in the store or point --store at a larger one",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return EmropsError(
            f"cannot write to backup store {store}: {exc.strerror}",
            hint="the store must be writable by the user running emrops: run it as the store's "
            "owner, or check the folder's permissions (`ls -ld`), attributes (`lsattr -d`: "
            "immutable) and mount (read-only)",
        )
    return EmropsError(f"cannot write to backup store {store}: {exc.strerror or exc}")


def open_store(spec: str, settings: Any = None) -> Store:
    """A store from ``./backups`` (local folder) or ``azure://CONTAINER/PREFIX``."""
    text = str(spec).strip()
    if text.startswith("azure://"):
        from emrops.backup.stores.azure import AzureStore

        return AzureStore.from_url(text, settings)
    if "://" in text:
        from emrops.errors import UsageError

        raise UsageError(
            f"unsupported backup store {text!r}",
            hint="use a local folder (./backups) or azure://CONTAINER/PREFIX",
        )
    from emrops.backup.stores.local import LocalStore

    return LocalStore(text)


def iter_chunks(stream: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    while True:
        chunk = stream.read(size)
        if not chunk:
            return
        yield chunk
