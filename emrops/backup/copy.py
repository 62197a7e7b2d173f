"""``backup copy``: a second copy of a backup in another store, checked and verified there.

Each stored file is streamed as is (still compressed and encrypted), its SHA-256 checked
against the manifest while copying, the manifest written last, then the copy is verified in
the destination like ``backup verify`` would (and the result recorded there).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from emrops.backup.codec import CHUNK, HashingReader, Progress, no_progress
from emrops.backup.lock import Warn
from emrops.backup.manifest import MANIFEST, MAX_DOCUMENT, PIN, Verification
from emrops.backup.run import remove_leftovers
from emrops.backup.stores import Store
from emrops.backup.verify import VerificationFailed, load_manifest, verify_locked
from emrops.errors import CheckFailed, EmropsError


@dataclass
class CopyResult:
    backup_id: str
    source: str
    destination: str
    bytes_copied: int
    verification: Verification


def copy_backup(
    source: Store,
    destination: Store,
    backup_id: str,
    *,
    pg_server: str | None = None,
    scratch_dir: Path | None = None,
    progress: Progress = no_progress,
    warn: Warn | None = None,
) -> CopyResult:
    """Copy one backup; raises CheckFailed when the source is damaged or the copy fails verify."""
    if source.identity == destination.identity:
        same = "" if source.url == destination.url else f" ({destination.url} leads to it)"
        raise EmropsError(
            f"source and destination are the same store{same}", hint="give another --to store"
        )
    copied = 0
    with (
        source.lock("backup copy (source)", warn, read_only_ok=True),
        destination.lock("backup copy", warn),
    ):
        manifest = load_manifest(source, backup_id)
        if manifest.seal_valid is False:
            raise CheckFailed(
                f"the manifest of {backup_id} in {source.url} does not match its seal: not copied",
                hint=f"run `emrops backup verify {backup_id}`",
            )
        if destination.exists(f"{backup_id}/{MANIFEST}"):
            raise EmropsError(f"backup {backup_id} is already in {destination.url}")
        remove_leftovers(destination)  # one that cannot be removed is warned of, not fatal
        try:
            for item in manifest.files:
                name = f"{backup_id}/{item.name}"
                with source.open_read(name) as stream, destination.writer(name) as sink:
                    reader = HashingReader(stream, progress, "copy", item.size)
                    while chunk := reader.read(CHUNK):
                        sink.write(chunk)
                    if reader.sha.hexdigest() != item.sha256 or reader.size != item.size:
                        raise CheckFailed(
                            f"{name} in {source.url} does not match its manifest (size/SHA-256): "
                            "not copied",
                            hint=f"run `emrops backup verify {backup_id}`",
                        )
                copied += reader.size
            if source.exists(f"{backup_id}/{PIN}"):
                destination.write_bytes(
                    f"{backup_id}/{PIN}",
                    source.read_bytes(f"{backup_id}/{PIN}", limit=MAX_DOCUMENT),
                )
            destination.write_bytes(f"{backup_id}/{MANIFEST}", manifest.to_json())
        except BaseException:
            with contextlib.suppress(Exception):
                destination.delete_backup(backup_id)
            raise
        verification = verify_locked(
            destination, backup_id, pg_server=pg_server, scratch_dir=scratch_dir, progress=progress
        )
    if not verification.ok:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in verification.failed)
        raise VerificationFailed(
            f"the copy of {backup_id} in {destination.url} failed verification: {failed}",
            [verification],
        )
    return CopyResult(backup_id, source.url, destination.url, copied, verification)
