"""Backup ids, manifests and verification records (the JSON documents in a store).

The manifest is the proof that a backup is complete: it is written after every data file
has been published, and it carries each file's size and SHA-256, which verify re-checks.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from emrops.errors import CheckFailed, UsageError

FORMAT = "emrops-backup/1"
MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
PIN = "pin.json"
ID_PATTERN = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}$")


def new_backup_id(now: datetime | None = None) -> str:
    """A sortable id from the UTC time: ``20261125T193012.345Z-3fa2c1``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    return f"{stamp}-{secrets.token_hex(3)}"


def check_id(backup_id: str) -> str:
    """Refuse anything that is not a backup id (it becomes part of a path or blob name)."""
    if not ID_PATTERN.fullmatch(backup_id):
        raise UsageError(
            f"invalid backup id {backup_id!r}",
            hint="copy an id from `emrops backup list`, e.g. 20261125T193012.345Z-3fa2c1",
        )
    return backup_id


@dataclass
class DataFile:
    """One stored object of a backup."""

    name: str  # e.g. database.zst.age
    role: str  # database | globals
    size: int  # stored bytes
    sha256: str  # of the stored bytes
    raw_size: int  # bytes before compression
    compression: str = "zstd"
    compression_level: int = 3
    encryption: str | None = None  # "age" or None
    recipients: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    """What a backup holds; JSON schema ``emrops-backup/1``."""

    id: str
    created_at: str  # ISO-8601 UTC
    engine: str  # sqlite | postgresql
    source: str  # masked URL
    schema_revision: str | None
    row_counts: dict[str, int]
    files: list[DataFile]
    tool_version: str
    host: str
    label: str = ""
    duration_s: float = 0.0
    engine_info: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    @property
    def created(self) -> datetime:
        return parse_time(self.created_at)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def encrypted(self) -> bool:
        return any(f.encryption for f in self.files)

    def database_file(self) -> DataFile:
        for item in self.files:
            if item.role == "database":
                return item
        raise CheckFailed(f"manifest of backup {self.id} lists no database file")

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        try:
            raw = json.loads(data)
            if raw.get("format") != FORMAT:
                raise ValueError(f"unknown format {raw.get('format')!r}")
            raw["files"] = [DataFile(**f) for f in raw["files"]]
            return cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckFailed(
                f"manifest {where} is unreadable: {exc}",
                hint="the backup is damaged; restore another one",
            ) from None


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verification:
    """The result of one verification, stored as ``<id>/verification.json``."""

    backup_id: str
    verified_at: str
    ok: bool
    checks: list[Check]
    duration_s: float
    tool_version: str
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier results, newest first

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> Verification | None:
        """None when the record is unreadable: the backup then counts as never verified."""
        try:
            raw = json.loads(data)
            raw["checks"] = [Check(**c) for c in raw["checks"]]
            return cls(**raw)
        except (ValueError, TypeError, KeyError):
            return None


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
