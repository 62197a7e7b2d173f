"""What each engine promises about durability, read from the live connection, and the warnings
a fair comparison needs (see docs/benchmark.md, "Durability parity").

Strength levels, weakest first:

* ``none``: a crash can corrupt or lose anything (SQLite ``synchronous=OFF``, PostgreSQL
  ``fsync=off``);
* ``recent``: consistent after a crash, but the last commits may be lost (SQLite WAL +
  ``synchronous=NORMAL``, PostgreSQL ``synchronous_commit=off``);
* ``full``: every acknowledged commit survives a crash (SQLite ``synchronous=FULL``/``EXTRA``,
  or rollback journal + ``NORMAL``; PostgreSQL ``fsync=on`` + ``synchronous_commit`` on/local/
  remote_*).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from emrops.db.engine import db_errors

LEVELS = ("none", "recent", "full")
_SQLITE_SYNC = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_PG_SETTINGS = (
    "fsync",
    "synchronous_commit",
    "wal_sync_method",
    "full_page_writes",
    "shared_buffers",
    "max_connections",
    "default_transaction_isolation",
)


def filesystem_type(path: str | Path) -> str | None:
    """The type of the file system holding ``path`` (ext4, tmpfs, ...), from /proc/mounts."""
    try:
        target = os.path.realpath(path)
        best, kind = "", None
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mount = parts[1].replace("\\040", " ")
                inside = target == mount or target.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) >= len(best):
                    best, kind = mount, parts[2]
        return kind
    except OSError:
        return None


def sqlite_level(journal_mode: str, synchronous: str) -> str:
    sync = synchronous.upper()
    if sync == "OFF" or journal_mode.lower() in ("off", "memory"):
        return "none"
    if sync in ("FULL", "EXTRA"):
        return "full"
    # NORMAL: durable in rollback-journal modes, may lose the last commits in WAL mode
    return "recent" if journal_mode.lower() == "wal" else "full"


def postgres_level(fsync: str, synchronous_commit: str) -> str:
    if fsync.lower() != "on":
        return "none"
    return "recent" if synchronous_commit.lower() == "off" else "full"


def capture(engine: Engine) -> dict[str, Any]:
    """Version, durability settings and their strength level, as seen by a pool connection."""
    with db_errors(engine.url), engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            version = conn.exec_driver_sql("SELECT sqlite_version()").scalar()
            journal = str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
            sync = _SQLITE_SYNC.get(
                int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one()), "?"
            )
            busy = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
            path = engine.url.database or ""
            return {
                "engine": "sqlite",
                "version": str(version),
                "settings": {
                    "journal_mode": journal,
                    "synchronous": sync,
                    "busy_timeout_ms": busy,
                    "write_transactions": "BEGIN IMMEDIATE",
                    "filesystem": filesystem_type(Path(path).parent) if path else None,
                },
                "durability": sqlite_level(journal, sync),
            }
        version = conn.exec_driver_sql("SHOW server_version").scalar()
        values: dict[str, str | None] = {
            name: str(conn.exec_driver_sql(f"SHOW {name}").scalar()) for name in _PG_SETTINGS
        }
        host = engine.url.host or "localhost"
        if host in ("localhost", "127.0.0.1", "::1") or host.startswith("/"):
            try:
                data_dir = conn.exec_driver_sql("SHOW data_directory").scalar()
                values["filesystem"] = filesystem_type(str(data_dir)) if data_dir else None
            except Exception:  # needs pg_read_all_settings; not worth failing the run over
                values["filesystem"] = None
        return {
            "engine": "postgresql",
            "version": str(version),
            "settings": values,
            "durability": postgres_level(str(values["fsync"]), str(values["synchronous_commit"])),
        }


def warnings_for(engines: list[dict[str, Any]]) -> list[str]:
    """Warnings about an unfair comparison: durability strength or file systems that differ."""
    out: list[str] = []
    levels = {e["engine"]: e["durability"] for e in engines}
    for e in engines:
        if e["durability"] == "none":
            out.append(
                f"{e['engine']} runs without crash safety (durability 'none'): "
                "its figures are not comparable with a production setup"
            )
    if len(set(levels.values())) > 1:
        described = ", ".join(
            f"{name} {level} ({_describe(next(e for e in engines if e['engine'] == name))})"
            for name, level in levels.items()
        )
        out.append(
            f"durability differs in strength: {described}; the weaker engine does less work "
            "per commit (for parity use --sqlite-synchronous full against "
            "synchronous_commit=on)"
        )
    filesystems = {e["settings"].get("filesystem") for e in engines} - {None}
    if len(filesystems) > 1:
        out.append(f"the engines store data on different file systems: {sorted(filesystems)}")
    if "tmpfs" in filesystems:
        out.append("a database lives on tmpfs (RAM): its commits never reach a disk")
    return out


def _describe(info: dict[str, Any]) -> str:
    s = info["settings"]
    if info["engine"] == "sqlite":
        return f"journal_mode={s['journal_mode']}, synchronous={s['synchronous']}"
    return f"fsync={s['fsync']}, synchronous_commit={s['synchronous_commit']}"


def machine() -> dict[str, Any]:
    """The client machine, recorded with every result."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
