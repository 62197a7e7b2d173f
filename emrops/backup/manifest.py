"""Backup ids, manifests and verification records (the JSON documents in a store).

The manifest is the proof that a backup is complete: it is written after every data file
has been published, and it carries each file's size and SHA-256, which verify re-checks.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from emrops import __version__
from emrops.errors import CheckFailed, ExitCode, UsageError

FORMAT = "emrops-backup/1"
MANIFEST = "manifest.json"
VERIFICATION = "verification.json"
PIN = "pin.json"
# The most read of a stored document (manifest, verification, pin): emrops writes a few KiB;
# anything larger is damage or a forgery and is never read whole into memory.
MAX_DOCUMENT = 8 << 20
# ASCII digits only: \d also matches other scripts' digits, and a folder named in fullwidth
# digits was taken for a crashed run's leftover and removed with what it held.
ID_PATTERN = re.compile(r"^[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-f]{6}$")


def new_backup_id(now: datetime | None = None) -> str:
    """A sortable id from the UTC time: ``20261125T193012.345Z-3fa2c1``."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond // 1000:03d}Z"
    return f"{stamp}-{secrets.token_hex(3)}"


def id_time(backup_id: str) -> datetime | None:
    """The UTC time a backup id was made from (:func:`new_backup_id`); None for another
    name."""
    if not ID_PATTERN.fullmatch(backup_id):
        return None
    return datetime.strptime(backup_id[:19], "%Y%m%dT%H%M%S.%f").replace(tzinfo=UTC)


def check_id(backup_id: str) -> str:
    """Refuse anything that is not a backup id (it becomes part of a path or blob name)."""
    if not ID_PATTERN.fullmatch(backup_id):
        raise UsageError(
            f"invalid backup id {backup_id!r}",
            hint="copy an id from `emrops backup list`, e.g. 20261125T193012.345Z-3fa2c1",
        )
    return backup_id


class NewerFormat(CheckFailed):
    """A manifest written by a newer emrops (a higher ``format``, or unknown fields from a
    newer tool version): this version cannot check it, which says nothing against it. Exit 1,
    never recorded as a failed verification (rotate would count it as damage); listed as
    broken, so rotate keeps it and never counts it."""

    exit_code = ExitCode.ERROR


def version_tuple(text: str) -> tuple[int, ...]:
    """``"3.40.1"`` -> ``(3, 40, 1)``; the digits each part starts with (``"2rc1"`` -> 2)."""
    parts = []
    for part in text.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, part))
        parts.append(int(digits or 0))
    return tuple(parts)


def _newer_format(raw: Any, where: str, reason: str) -> NewerFormat | None:
    """NewerFormat when ``raw`` says it was written by a newer emrops: a format
    ``emrops-backup/N`` with N above ours, or (fields we do not know being the reason) a
    ``tool_version`` above ours."""
    if not isinstance(raw, dict):
        return None
    fmt, tool = raw.get("format"), raw.get("tool_version")
    ours = int(FORMAT.rsplit("/", 1)[1])
    number = re.fullmatch(r"emrops-backup/([0-9]{1,9})", fmt) if isinstance(fmt, str) else None
    if number is not None and int(number[1]) > ours:
        what = f"format {fmt}; this emrops reads {FORMAT}"
    elif (
        fmt == FORMAT
        and "Additional properties" in reason
        and isinstance(tool, str)
        and version_tuple(tool[:64]) > version_tuple(__version__)
    ):
        what = f"fields this emrops does not know: {reason}"
    else:
        return None
    tool_text = tool[:64] if isinstance(tool, str) else "not given"
    newer = isinstance(tool, str) and version_tuple(tool_text) > version_tuple(__version__)
    return NewerFormat(
        f"manifest {where} was written by a newer emrops ({what}; its tool_version: "
        f"{tool_text}); this emrops ({__version__}) cannot check or restore it: nothing was "
        "recorded about the backup",
        hint=f"verify, restore and copy this backup with emrops {tool_text} or newer"
        if newer
        else f"verify, restore and copy this backup with the emrops that wrote {fmt!s:.64}",
    )


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
    """What a backup holds; JSON schema ``emrops-backup/1`` (schemas.py).

    ``seal`` is ``sha256:`` of the canonical form of every other field (:func:`seal_of`);
    ``source_id`` identifies the database backed up (sources.py). Both are absent from
    manifests written before they existed."""

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
    source_id: dict[str, Any] | None = None
    seal: str | None = None
    # not stored: whether ``seal`` matched the document it was read from (None: no seal)
    seal_valid: bool | None = field(default=None, compare=False)

    @property
    def created(self) -> datetime:
        return parse_time(self.created_at)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def encrypted(self) -> bool:
        return any(f.encryption for f in self.files)

    @property
    def sealed(self) -> bool:
        return self.seal is not None

    def database_file(self) -> DataFile:
        for item in self.files:
            if item.role == "database":
                return item
        raise CheckFailed(f"manifest of backup {self.id} lists no database file")

    def document(self) -> dict[str, Any]:
        """The JSON document, without the optional fields that are unset."""
        doc = asdict(self)
        del doc["seal_valid"]
        for key in ("source_id", "seal"):
            if doc[key] is None:
                del doc[key]
        return doc

    def seal_now(self) -> Manifest:
        """Set ``seal`` over the current fields (done once, just before publishing)."""
        doc = self.document()
        doc.pop("seal", None)
        self.seal = seal_of(doc)
        self.seal_valid = True
        return self

    def bound_digest(self) -> bytes:
        """The digest carried inside an encrypted stream: the fields known before the data
        files are written (their sizes and SHA-256 are checked separately)."""
        doc = self.document()
        bound = {k: doc.get(k) for k in BOUND_FIELDS}
        return hashlib.sha256(canonical(bound)).digest()

    def to_json(self) -> bytes:
        return (json.dumps(self.document(), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str, folder: str | None = None) -> Manifest:
        """Parse and validate (schemas.py): raises CheckFailed naming what is wrong."""
        from emrops.backup.schemas import InvalidDocument, check_manifest

        try:
            raw = load_document(data)
            check_manifest(raw, folder)
        except (ValueError, InvalidDocument) as exc:
            newer = (
                _newer_format(raw, where, str(exc)) if isinstance(exc, InvalidDocument) else None
            )
            if newer is not None:
                raise newer from None
            raise CheckFailed(
                f"manifest {where} is invalid: {exc}",
                hint="the backup is damaged or was changed; restore another one",
            ) from None
        fields = dict(raw)
        fields["files"] = [DataFile(**f) for f in raw["files"]]
        manifest = cls(**fields)
        if manifest.seal is not None:
            unsealed = dict(raw)
            del unsealed["seal"]
            manifest.seal_valid = hmac.compare_digest(seal_of(unsealed), manifest.seal)
        return manifest


BOUND_FIELDS = (
    "format",
    "id",
    "created_at",
    "engine",
    "source",
    "source_id",
    "schema_revision",
    "row_counts",
    "label",
    "host",
    "tool_version",
)


MAX_DEPTH = 32  # emrops writes documents 4 levels deep


def load_document(data: bytes) -> Any:
    """Parse a stored JSON document; ValueError when it is not JSON or nested deeper than
    MAX_DEPTH (a forged one: deep nesting exhausts the parser's or a later copy's recursion)."""
    try:
        doc = json.loads(data)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels") from None
    todo = [(doc, 1)]
    while todo:
        item, depth = todo.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            todo.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            todo.extend((v, depth + 1) for v in item)
    return doc


def canonical(doc: Any) -> bytes:
    """One byte form of a JSON document: sorted keys, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def seal_of(doc: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verification:
    """The result of one verification, stored as ``<id>/verification.json``.

    ``manifest_seal`` is the seal of the manifest that was verified: a result counts only
    for that manifest (a manifest changed afterwards is not verified)."""

    backup_id: str
    verified_at: str
    ok: bool
    checks: list[Check]
    duration_s: float
    tool_version: str
    history: list[dict[str, Any]] = field(default_factory=list)  # earlier results, newest first
    manifest_seal: str | None = None

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def reason(self) -> str:
        """What failed, in one line ("" when ok)."""
        return "; ".join(f"{c.name}: {c.detail}" for c in self.failed)

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, folder: str) -> Verification:
        """Parse and validate; raises CheckFailed when the record is invalid (the backup then
        counts as not verified)."""
        from emrops.backup.schemas import InvalidDocument, check_verification

        try:
            raw = load_document(data)
            check_verification(raw, folder)
        except (ValueError, InvalidDocument) as exc:
            raise CheckFailed(
                f"verification record {folder}/{VERIFICATION} is invalid: {exc}"
            ) from None
        raw["checks"] = [Check(**c) for c in raw["checks"]]
        return cls(**raw)


def parse_time(text: str) -> datetime:
    """A stored timestamp: ISO-8601 with an explicit UTC offset (``Z`` or ``+00:00``) only."""
    if not isinstance(text, str) or not STRICT_TIME.match(text):
        raise ValueError(f"not an ISO-8601 UTC time: {text!r}")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


STRICT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|\+00:00)$")
