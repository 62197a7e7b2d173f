"""Optional encryption in the age format (pyrage), interoperable with the ``age`` CLI.

Backups are encrypted to recipients (public keys, fine in the config file); only verify and
restore need the identity, read from ``EMROPS_BACKUP_IDENTITY`` and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyrage

from emrops import atomic, secrets
from emrops.errors import EmropsError, UsageError

IDENTITY_ENV = "EMROPS_BACKUP_IDENTITY"


class IdentityProblem(EmropsError):
    """The identity to decrypt a backup is missing or is not the one it was encrypted to.

    A configuration error (exit 1), not damage: nothing is recorded about the backup."""


@dataclass(frozen=True)
class KeyPair:
    identity: str
    recipient: str


def keygen() -> KeyPair:
    """A new X25519 identity and its recipient."""
    identity = pyrage.x25519.Identity.generate()
    return KeyPair(str(identity), str(identity.to_public()))


def write_identity_file(path: Path, pair: KeyPair) -> None:
    """Write ``pair`` as an age identity file (what ``age-keygen -o`` writes), mode 0600.

    Never overwrites: losing an identity makes every backup encrypted to it unreadable. The
    file appears complete or not at all (written beside it, fsynced, then hard-linked into
    place, which fails if the name exists).
    """
    from datetime import UTC, datetime

    text = (
        f"# created: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"# public key: {pair.recipient}\n"
        f"{pair.identity}\n"
    )
    if path.exists() or path.is_symlink():
        raise UsageError(
            f"{path} exists: refusing to overwrite an identity file",
            hint="choose another --out path, or move the old file away yourself",
        )
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise UsageError(
                f"{path} exists: refusing to overwrite an identity file",
                hint="choose another --out path, or move the old file away yourself",
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    atomic.fsync_dir(folder)


def parse_recipients(text: str | None) -> list[Any]:
    """Recipients from a comma/space-separated list of ``age1...`` keys."""
    keys = [k for k in (text or "").replace(",", " ").split() if k]
    if not keys:
        raise UsageError(
            "--encrypt needs a recipient (age public key)",
            hint="run `emrops backup keygen` and set backup.recipient in emrops.toml "
            "or EMROPS_BACKUP_RECIPIENT",
        )
    out = []
    for key in keys:
        try:
            out.append(pyrage.x25519.Recipient.from_str(key))
        except (pyrage.RecipientError, ValueError) as exc:
            raise UsageError(
                f"invalid age recipient {key!r}: {exc}", hint="it starts with age1"
            ) from None
    return out


def load_identities(backup_id: str) -> list[Any]:
    """Identities from EMROPS_BACKUP_IDENTITY: a key, or age identity-file text (comments ok)."""
    text = os.environ.get(IDENTITY_ENV, "")
    keys = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("AGE-SECRET-KEY-")]
    if not keys:
        raise IdentityProblem(
            f"backup {backup_id} is encrypted and {IDENTITY_ENV} is not set",
            hint=f"export {IDENTITY_ENV} with the age identity (AGE-SECRET-KEY-1...)",
        )
    out = []
    for key in keys:
        secrets.register_secret(key)
        try:
            out.append(pyrage.x25519.Identity.from_str(key))
        except (pyrage.IdentityError, ValueError):
            raise IdentityProblem(
                f"{IDENTITY_ENV} does not hold a valid age identity",
                hint=f"set {IDENTITY_ENV} to an identity from `emrops backup keygen`",
            ) from None
    return out


def recipients_of(identities: list[Any]) -> set[str]:
    """The public keys (age1...) of ``identities``."""
    return {str(identity.to_public()) for identity in identities}


def encrypt_stream(source: IO[bytes], sink: IO[bytes], recipients: list[Any]) -> None:
    pyrage.encrypt_io(source, sink, recipients)


def decrypt_stream(source: IO[bytes], sink: IO[bytes], identities: list[Any]) -> None:
    """Decrypt; a wrong identity or damaged ciphertext raises pyrage.DecryptError."""
    pyrage.decrypt_io(source, sink, identities)
