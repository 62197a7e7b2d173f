"""JSON schemas of the documents in a store (manifest, verification, pin), checked on read.

Everything read from a store is untrusted input: anyone who can write to the store can write
these files. A document that does not match its schema, whose id is not the folder it is in,
whose file names are not plain names, or whose timestamps are not strict UTC times, is
refused with a reason (:class:`InvalidDocument`); callers list such a backup as broken.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from emrops.backup.manifest import FORMAT, ID_PATTERN, MANIFEST, PIN, VERIFICATION, parse_time

# A stored file name: letters, digits, dot, dash, underscore; no leading dot (so neither "."
# nor ".."), no separator, no NUL, not absolute.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
RESERVED = {MANIFEST, VERIFICATION, PIN}
_INT = {"type": "integer", "minimum": 0}
_TEXT = {"type": "string", "maxLength": 4096}

MANIFEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "format",
        "id",
        "created_at",
        "engine",
        "source",
        "schema_revision",
        "row_counts",
        "files",
        "tool_version",
        "host",
    ],
    "properties": {
        "format": {"const": FORMAT},
        "id": {"type": "string", "pattern": ID_PATTERN.pattern},
        "created_at": {"type": "string"},
        "engine": {"enum": ["sqlite", "postgresql"]},
        "source": _TEXT,
        "source_id": {"type": ["object", "null"]},
        "schema_revision": {"type": ["string", "null"], "maxLength": 256},
        "row_counts": {"type": "object", "additionalProperties": _INT},
        "files": {
            "type": "array",
            "minItems": 1,
            "maxItems": 16,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "role", "size", "sha256", "raw_size"],
                "properties": {
                    "name": {"type": "string"},
                    "role": {"enum": ["database", "globals"]},
                    "size": _INT,
                    "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                    "raw_size": _INT,
                    "compression": {"const": "zstd"},
                    "compression_level": {"type": "integer"},
                    "encryption": {"enum": ["age", None]},
                    "recipients": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^age1[0-9a-z]+$"},
                    },
                },
            },
        },
        "tool_version": _TEXT,
        "host": _TEXT,
        "label": _TEXT,
        "duration_s": {"type": "number", "minimum": 0},
        "engine_info": {"type": "object"},
        "seal": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
    },
}

_CHECK = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "ok"],
    "properties": {"name": _TEXT, "ok": {"type": "boolean"}, "detail": {"type": "string"}},
}

VERIFICATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["backup_id", "verified_at", "ok", "checks", "duration_s", "tool_version"],
    "properties": {
        "backup_id": {"type": "string"},
        "verified_at": {"type": "string"},
        "ok": {"type": "boolean"},
        "checks": {"type": "array", "items": _CHECK},
        "duration_s": {"type": "number", "minimum": 0},
        "tool_version": _TEXT,
        "history": {"type": "array", "maxItems": 100, "items": {"type": "object"}},
        "manifest_seal": {"type": ["string", "null"]},
    },
}

PIN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["pinned_at"],
    "properties": {
        "backup_id": {"type": "string"},
        "pinned_at": {"type": "string"},
        "reason": _TEXT,
        "host": _TEXT,
    },
}


class InvalidDocument(Exception):
    """A stored document is not what its schema says; the message is the reason."""


def _validate(doc: Any, schema: dict[str, Any]) -> None:
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(doc)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "document"
        raise InvalidDocument(f"{where}: {error.message[:200]}")


def _time(value: str, what: str) -> None:
    try:
        parse_time(value)
    except ValueError:
        raise InvalidDocument(f"{what}: not an ISO-8601 UTC time: {value[:64]!r}") from None


def _id(value: str, folder: str | None, what: str) -> None:
    if folder is not None and value != folder:
        raise InvalidDocument(f"{what} {value[:64]!r} is not the folder it is in ({folder!r})")


def plain_name(name: str) -> bool:
    """A file name with no path in it (no separator, no "..", not absolute, no NUL)."""
    return bool(PLAIN_NAME.fullmatch(name)) and name not in RESERVED


def check_manifest(doc: Any, folder: str | None) -> None:
    _validate(doc, MANIFEST_SCHEMA)
    _id(doc["id"], folder, "id")
    _time(doc["created_at"], "created_at")
    names = [f["name"] for f in doc["files"]]
    for name in names:
        if not plain_name(name):
            raise InvalidDocument(f"file name {name[:64]!r} is not a plain file name")
    if len(set(names)) != len(names):
        raise InvalidDocument("a file name is listed twice")
    if [f["role"] for f in doc["files"]].count("database") != 1:
        raise InvalidDocument("exactly one file must have the role database")


def check_verification(doc: Any, folder: str) -> None:
    _validate(doc, VERIFICATION_SCHEMA)
    _id(doc["backup_id"], folder, "backup_id")
    _time(doc["verified_at"], "verified_at")


def check_pin(doc: Any, folder: str) -> None:
    _validate(doc, PIN_SCHEMA)
    if "backup_id" in doc:
        _id(doc["backup_id"], folder, "backup_id")
    _time(doc["pinned_at"], "pinned_at")
