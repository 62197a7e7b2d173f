"""Which database a backup is of: one store can hold backups of many sources.

Each manifest records ``source_id``, a stable identity of the database backed up:

- SQLite: ``{"kind": "sqlite", "path": <resolved path>, "header": {...}}``. The path (symlinks
  resolved) is the key; the header fields (page size, text encoding, application id) are
  kept to tell another file at the same path apart when restoring. ``sim init-db`` writes no
  id into the database, and emrops never writes into a source database to add one.
- PostgreSQL: ``{"kind": "postgresql", "system_identifier": "...", "database": "..."}``:
  the cluster's system identifier (``pg_control_system()``, kept across restarts, new for a
  new cluster) and the database name. Where the function cannot be read (permissions), the
  identity is the masked URL's host, port and database.

Manifests written before source ids existed are matched by their recorded ``source`` URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops.backup.manifest import Manifest
from emrops.db.sqlite_file import header_page_size, not_a_file
from emrops.db.urls import simple_sqlite_path, sqlite_db_url
from emrops.errors import UsageError
from emrops.logs import get_logger
from emrops.paths import user_path

log = get_logger(__name__)
ALL = "all"


@dataclass(frozen=True)
class Source:
    """A database as the filter sees it: ``key`` (from its identity) and its masked URL."""

    key: str | None
    url: str
    identity: dict[str, Any] | None = None

    def describe(self) -> str:
        return self.url


def key_of(identity: dict[str, Any] | None) -> str | None:
    """The comparable part of a source identity (None when there is none)."""
    if not identity:
        return None
    kind = identity.get("kind")
    if kind == "sqlite" and isinstance(identity.get("path"), str):
        return f"sqlite:{identity['path']}"
    if kind == "postgresql":
        if identity.get("system_identifier") and identity.get("database"):
            return f"postgresql:{identity['system_identifier']}/{identity['database']}"
        if identity.get("url"):
            return f"postgresql-url:{identity['url']}"
    return None


def sqlite_identity(path: Path) -> dict[str, Any]:
    """The identity of the SQLite file at ``path``: read from its header, never written."""
    resolved = Path(os.path.realpath(path))
    header: dict[str, Any] = {}
    try:
        if not_a_file(resolved) is not None:  # a pipe or device: opening it could block
            raise FileNotFoundError(resolved)
        with open(resolved, "rb") as handle:
            head = handle.read(100)
        if len(head) == 100 and head.startswith(b"SQLite format 3\x00"):
            header = {
                "page_size": header_page_size(head),
                "text_encoding": int.from_bytes(head[56:60], "big"),
                "application_id": int.from_bytes(head[68:72], "big"),
            }
    except OSError:
        pass  # a missing file still has an identity: its path
    return {"kind": "sqlite", "path": str(resolved), "header": header}


def postgres_identity(db: Any) -> dict[str, Any]:
    """System identifier + database name of the PostgreSQL database ``db`` (a DbUrl)."""
    import sqlalchemy as sa

    from emrops.db.engine import oneshot_engine, translate

    engine = oneshot_engine(db.url)
    try:
        with engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT system_identifier::text, current_database() FROM pg_control_system()"
            ).one()
        return {"kind": "postgresql", "system_identifier": row[0], "database": row[1]}
    except sa.exc.SQLAlchemyError as exc:
        # the driver's first line: not SQLAlchemy's "(Background on this error at: ...)"
        log.info("cannot read the system identifier: %s", translate(exc, db.url).message)
        return {"kind": "postgresql", "url": _pg_url_key(db), "database": db.url.database}
    finally:
        engine.dispose()


def _pg_url_key(db: Any) -> str:
    url = db.url
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database}"


def identity_of(db_url: str, *, connect: bool = True) -> dict[str, Any]:
    """The identity of a database URL or SQLite path (PostgreSQL: ``connect`` to read it)."""
    # a path or a plain SQLite URL needs no SQLAlchemy import (a backup's start-up time)
    plain = user_path(db_url) if "://" not in db_url else simple_sqlite_path(db_url)
    if plain is not None:
        return sqlite_identity(plain)
    db = _db(db_url)
    if db.engine_name == "sqlite":
        if db.sqlite_path is None:
            raise UsageError(
                f"{db_url!r} is an in-memory SQLite database: it has no backups",
                hint="name the database file (a path or sqlite:///path/to/emrsim.db)",
            )
        return sqlite_identity(db.sqlite_path)
    if connect:
        return postgres_identity(db)
    return {"kind": "postgresql", "url": _pg_url_key(db), "database": db.url.database}


def _db(text: str) -> Any:
    if "://" not in text:
        text = sqlite_db_url(user_path(text))  # escaped: a '?' or '%' in a name survives
    from emrops.db.engine import parse_db_url  # SQLAlchemy: only for what the light reader can't

    return parse_db_url(text)


def source_of(text: str) -> Source:
    """The source a ``--source URL|PATH`` (or the configured database URL) names."""
    db = _db(text)
    identity = identity_of(text)
    return Source(key_of(identity), db.masked(), identity)


def matches(manifest: Manifest, source: Source) -> bool:
    """Whether ``manifest`` is a backup of ``source``."""
    mine = key_of(manifest.source_id)
    if mine is not None and source.key is not None:
        if mine == source.key:
            return True
        # a PostgreSQL identity read without the system identifier: compare the URL part
        if not (mine.startswith("postgresql-url:") or source.key.startswith("postgresql-url:")):
            return False
    return _same_url(manifest.source, source.url)


def _same_url(recorded: str, url: str) -> bool:
    if recorded == url:
        return True
    try:
        a, b = _db(recorded), _db(url)
    except Exception:  # noqa: BLE001 - a recorded URL we cannot parse matches nothing
        return False
    if a.engine_name != b.engine_name:
        return False
    if a.engine_name == "sqlite":
        return (
            a.sqlite_path is not None
            and b.sqlite_path is not None
            and os.path.realpath(a.sqlite_path) == os.path.realpath(b.sqlite_path)
        )
    return bool(_pg_url_key(a) == _pg_url_key(b))


def same_database(backup: dict[str, Any] | None, target: dict[str, Any] | None) -> bool | None:
    """Whether a restore target is the database a backup was taken of (None: cannot tell)."""
    if not backup or not target:
        return None
    if key_of(backup) != key_of(target):
        return False
    if backup.get("kind") == "sqlite":
        # the same path can hold another file: tell them apart by what the header says
        b, t = backup.get("header") or {}, target.get("header") or {}
        return not (b and t and b != t)
    return True


def select_source(text: str | None, configured: str, configured_is_default: bool) -> Source | None:
    """The source filter of a command: ``--source all`` -> None (every source), a URL or
    path -> that database, nothing -> the configured database (None when no database is
    configured, i.e. db_url is the built-in default: then every source counts)."""
    if text is not None and text.strip().lower() == ALL:
        return None
    if text:
        return source_of(text)
    if configured_is_default:
        return None
    return source_of(configured)
