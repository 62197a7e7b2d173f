"""Verifying a PostgreSQL backup: pg_restore into a scratch database, then row counts.

Apart from verify.py so SQLite verifications never import SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa

from emrops import secrets
from emrops.backup.manifest import Manifest
from emrops.backup.pgdump import (
    killed_by,
    libpq_conninfo,
    pg_facts,
    pg_tool,
    tool_error,
    tool_major,
)
from emrops.backup.verify import Checks, check_counts
from emrops.db.engine import create_engine, db_errors, oneshot_engine, parse_db_url
from emrops.db.quoting import pg_text, quote_ident
from emrops.errors import DatabaseError, UsageError
from emrops.logs import get_logger

log = get_logger(__name__)


# pg_advisory_lock(_LOCK_CLASS, hashtext(name)) is held, on the server's postgres database,
# by the run that uses the scratch database `name`, for as long as it exists.
_LOCK_CLASS = 0x656D7276  # "emrv"
_PREFIX = "emrops_verify_"


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``, dropped afterwards.
    A run killed while it used one (SIGKILL, a crash, a lost host) cannot drop it: each run
    first drops those no live run holds (see :func:`sweep_scratch_databases`)."""
    db = parse_db_url(server_url)
    if db.engine_name != "postgresql":
        raise UsageError(
            "verifying a PostgreSQL backup needs a PostgreSQL server for the scratch database",
            hint="pass --db postgresql+psycopg://user@host/db (CREATE DATABASE permission needed)",
        )
    admin_url = db.url.set(database="postgres")
    name = f"{_PREFIX}{uuid.uuid4().hex[:12]}"
    admin = oneshot_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with db_errors(admin_url), admin.connect() as conn:
            sweep_scratch_databases(conn)
            # the session holding this lock lives as long as the scratch database is in use
            _lock(conn, "pg_advisory_lock", name)
            try:
                conn.exec_driver_sql(pg_text(f"CREATE DATABASE {quote_ident(name)}"))
            except sa.exc.ProgrammingError as exc:
                if "permission denied" not in str(exc.orig):
                    raise
                raise DatabaseError(
                    f"cannot create a scratch database on the server of {db.masked()} to "
                    f"verify the backup in: {str(exc.orig).splitlines()[0]}",
                    hint="the backup is restored into a scratch database and checked before "
                    "anything else: use a user with CREATEDB (ALTER ROLE ... CREATEDB)",
                ) from exc
            try:
                yield db.url.set(database=name).render_as_string(hide_password=False)
            finally:
                _drop(conn, admin, name)
    finally:
        admin.dispose()


def _drop(conn: sa.Connection, admin: sa.Engine, name: str) -> None:
    """Drop the scratch database, on a new connection when the one holding its lock was lost
    (terminated, server restarted); when that fails too, a later run drops it (its lock is
    gone), and the error that ended the verification is the one reported."""
    sql = pg_text(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    try:
        conn.exec_driver_sql(sql)
        return
    except sa.exc.DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    try:
        with admin.connect() as fresh:
            fresh.exec_driver_sql(sql)
    except sa.exc.DBAPIError as exc:
        log.warning("cannot drop scratch database %s (the next verification does): %s", name, exc)


def _lock(conn: sa.Connection, function: str, name: str) -> bool:
    sql = f"SELECT {function}(%s, hashtext(%s))"
    return bool(conn.exec_driver_sql(sql, (_LOCK_CLASS, name)).scalar())


def sweep_scratch_databases(conn: sa.Connection) -> list[str]:
    """Drop the scratch databases (``emrops_verify_*``) whose run is gone: those no session
    is connected to and whose advisory lock no session holds. Returns their names; one that
    cannot be dropped (another user's) is left for its owner."""
    # one with a session in it is in use (also by a version of emrops that takes no lock)
    rows = conn.exec_driver_sql(
        "SELECT d.datname FROM pg_database d WHERE starts_with(d.datname, %s) AND NOT EXISTS "
        "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)",
        (_PREFIX,),
    )
    names = [r[0] for r in rows]
    swept = []
    for name in names:
        if not _lock(conn, "pg_try_advisory_lock", name):
            continue  # in use by a live run
        try:
            conn.exec_driver_sql(
                pg_text(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
            )
            swept.append(name)
            log.info("dropped scratch database %s, left by a verification that died", name)
        except sa.exc.DBAPIError as exc:
            log.info("cannot drop the leftover scratch database %s: %s", name, exc.orig)
        finally:
            _lock(conn, "pg_advisory_unlock", name)
    return swept


def pg_restore(archive: Path, target_url: str, *extra: str) -> tuple[int, str]:
    conninfo, env = libpq_conninfo(parse_db_url(target_url).url)
    proc = subprocess.run(
        [
            pg_tool("pg_restore"),
            "--exit-on-error",
            "--no-owner",
            "--no-privileges",
            *extra,
            "-d",
            conninfo,
            str(archive),
        ],
        capture_output=True,
        env=env,
        check=False,
    )
    text = secrets.mask(proc.stderr.decode(errors="replace"))
    return proc.returncode, tool_error(text) if text.strip() else ""


# what pg_restore relays of SQLSTATE class 53 (it prints no SQLSTATE): disk, memory, slots
_OUT_OF_RESOURCES = (
    "No space left on device",
    "could not extend file",
    "out of memory",
    "out of shared memory",
    "too many clients",
    "remaining connection slots",
)


def _too_old(manifest: Manifest) -> str:
    """Why pg_restore cannot read an archive's format: the pg_dump that wrote it is newer."""
    wrote = manifest.engine_info.get("pg_dump_version") or "a newer pg_dump"
    _major, here = tool_major("pg_restore")
    return (
        f" (the archive was written by {wrote}; {here or 'this pg_restore'} cannot read it: "
        "install a PostgreSQL client at least as new, first on PATH)"
    )


def check_postgres(archive: Path, manifest: Manifest, server_url: str, checks: Checks) -> None:
    with scratch_database(server_url) as scratch:
        code, message = pg_restore(archive, scratch)
        if code and "unsupported version" in message:
            message += _too_old(manifest)
        killed = killed_by(code)
        if killed:  # the OOM killer, an operator: not the backup's fault
            raise DatabaseError(
                f"could not verify backup {manifest.id}: pg_restore was killed by {killed} "
                "while it restored the backup into a scratch database; the backup was not "
                "judged, nothing was recorded or changed",
                hint="if the kernel's OOM killer did it (see `dmesg`), give the host more "
                "memory; then run it again",
            )
        if code and any(sign in message for sign in _OUT_OF_RESOURCES):
            # the server's trouble, not the backup's: no failed verification is recorded
            raise DatabaseError(
                f"could not verify backup {manifest.id}: the PostgreSQL server ran out of a "
                f"resource while it was restored into a scratch database ({message}); the "
                "backup was not judged, nothing was recorded or changed",
                hint="make room on the server (disk where new databases are created: the "
                "backup's size plus its indexes; memory, connections), then run it again",
            )
        if not checks.add(
            "pg_restore", code == 0, message if code else "restored into a scratch database"
        ):
            return
        engine = create_engine(scratch, pool_size=1, max_overflow=0, bulk=True)
        try:
            legacy: dict[str, int] = {}
            with db_errors(scratch), engine.connect() as conn:
                counts, _ = pg_facts(conn, legacy)
        finally:
            engine.dispose()
    if any(key not in counts for key in manifest.row_counts):
        # A manifest from before quoted keys names dotted tables unquoted: compare with those.
        counts = {key: counts.get(key, legacy.get(key, -1)) for key in manifest.row_counts}
        counts = {k: v for k, v in counts.items() if v >= 0}
    check_counts(manifest.row_counts, counts, checks)
