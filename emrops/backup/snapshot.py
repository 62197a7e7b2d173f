"""Consistent snapshots of the source database.

SQLite: the online backup API in one step (``backup(pages=-1)``) into a scratch file. One
step holds a read transaction for the whole copy, so writers (WAL mode) keep going and the
copy cannot be restarted and starved the way the stepped API can; row counts are taken from
the copy, so they belong to the same point in time.
PostgreSQL: a REPEATABLE READ transaction exports its snapshot, row counts are read in it
and ``pg_dump -Fc --snapshot=...`` dumps exactly that snapshot; roles come from
``pg_dumpall --globals-only --no-role-passwords`` when the user may read them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from emrops.db.engine import DbUrl, create_engine, db_errors
from emrops.errors import DatabaseError, EmropsError, UsageError

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass
class Snapshot:
    row_counts: dict[str, int]
    schema_revision: str | None
    engine_info: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # SQLite: the scratch copy
    stream: IO[bytes] | None = None  # PostgreSQL: pg_dump's stdout


def check_sqlite_file(path: Path) -> None:
    """Refuse a missing file or one that is not an SQLite database, with a clear message."""
    if not path.exists():
        raise UsageError(f"database file not found: {path}", hint="check the --db path")
    if path.is_dir():
        raise UsageError(f"{path} is a folder, not a database file", hint="point --db at a file")
    with path.open("rb") as handle:
        header = handle.read(16)
    if header and header != SQLITE_HEADER:
        raise UsageError(
            f"{path} is not an SQLite database",
            hint="check that --db (or EMROPS_DB_URL) points at the EMRsim database file",
        )


def sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    return [r[0] for r in rows]


def sqlite_facts(conn: sqlite3.Connection) -> tuple[dict[str, int], str | None]:
    """Row count per table and the Alembic revision of an open SQLite database."""
    tables = sqlite_tables(conn)
    counts = {t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]) for t in tables}
    revision = None
    if "alembic_version" in tables:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = row[0] if row else None
    return counts, revision


@contextlib.contextmanager
def sqlite_snapshot(db: DbUrl, scratch_dir: Path | None = None) -> Iterator[Snapshot]:
    """A consistent copy of the SQLite database in a scratch file, removed afterwards."""
    path = db.sqlite_path
    if path is None:
        raise UsageError("an in-memory SQLite database cannot be backed up")
    check_sqlite_file(path)
    folder = Path(scratch_dir or tempfile.gettempdir())
    fd, name = tempfile.mkstemp(prefix="emrops-snapshot-", suffix=".db", dir=folder)
    os.close(fd)
    scratch = Path(name)
    try:
        try:
            source = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=30)
            try:
                target = sqlite3.connect(scratch)
                try:
                    source.backup(target, pages=-1)
                    counts, revision = sqlite_facts(target)
                    info = {
                        "sqlite_version": sqlite3.sqlite_version,
                        "page_size": target.execute("PRAGMA page_size").fetchone()[0],
                        "page_count": target.execute("PRAGMA page_count").fetchone()[0],
                    }
                finally:
                    target.close()
            finally:
                source.close()
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(path, folder, exc) from exc
        yield Snapshot(counts, revision, info, path=scratch)
    finally:
        with contextlib.suppress(FileNotFoundError):
            scratch.unlink()


def _sqlite_error(path: Path, folder: Path, exc: sqlite3.DatabaseError) -> EmropsError:
    text = str(exc)
    if "disk is full" in text or "disk I/O error" in text:
        return EmropsError(
            f"cannot snapshot {path} into {folder}: {text} (is the disk full?)",
            hint="free space in the scratch folder, or set TMPDIR to a larger one",
        )
    if "not a database" in text:
        return UsageError(f"{path} is not an SQLite database", hint="check the --db path")
    return DatabaseError(f"cannot snapshot {path}: {text}")


def libpq_conninfo(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment carrying it (PGPASSWORD)."""
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def pg_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise EmropsError(
            f"{name} is not installed",
            hint="install the PostgreSQL client (Debian: postgresql-client)",
        )
    return found


def pg_tables(conn: sa.Connection) -> list[tuple[str, str]]:
    rows = conn.exec_driver_sql(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY 1, 2"
    )
    return [(r[0], r[1]) for r in rows]


def pg_facts(conn: sa.Connection) -> tuple[dict[str, int], str | None]:
    counts: dict[str, int] = {}
    revision = None
    for schema, table in pg_tables(conn):
        key = table if schema == "public" else f"{schema}.{table}"
        counts[key] = int(
            conn.exec_driver_sql(f'SELECT count(*) FROM "{schema}"."{table}"').scalar() or 0
        )
        if table == "alembic_version" and schema == "public":
            revision = conn.exec_driver_sql(
                "SELECT version_num FROM public.alembic_version"
            ).scalar()
    return counts, revision


@contextlib.contextmanager
def postgres_snapshot(db: DbUrl) -> Iterator[Snapshot]:
    """pg_dump of an exported snapshot, streamed; raises DatabaseError when pg_dump fails."""
    engine = create_engine(db, pool_size=1, max_overflow=0)
    try:
        with db_errors(db), engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                snapshot_id = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar()
                counts, revision = pg_facts(conn)
                server = conn.exec_driver_sql("SHOW server_version").scalar()
                conninfo, env = libpq_conninfo(db.url)
                version = subprocess.run(
                    [pg_tool("pg_dump"), "--version"], capture_output=True, text=True, check=False
                ).stdout.strip()
                with tempfile.TemporaryFile() as errors:
                    proc = subprocess.Popen(
                        [
                            pg_tool("pg_dump"),
                            "-Fc",
                            "-Z0",
                            f"--snapshot={snapshot_id}",
                            "-d",
                            conninfo,
                        ],
                        stdout=subprocess.PIPE,
                        stderr=errors,
                        env=env,
                    )
                    info = {"server_version": server, "pg_dump_version": version}
                    try:
                        assert proc.stdout is not None
                        yield Snapshot(counts, revision, info, stream=proc.stdout)
                    finally:
                        proc.stdout.close()  # type: ignore[union-attr]
                        code = proc.wait()
                    if code != 0:
                        errors.seek(0)
                        lines = errors.read().decode(errors="replace").strip().splitlines()
                        raise DatabaseError(
                            f"pg_dump of {db.masked()} failed (exit {code}): "
                            f"{lines[-1] if lines else 'no message'}"
                        )
    finally:
        engine.dispose()


def pg_globals(db: DbUrl) -> tuple[bytes | None, str]:
    """Roles and tablespaces (no passwords); (None, reason) when not permitted."""
    conninfo, env = libpq_conninfo(db.url)
    proc = subprocess.run(
        [pg_tool("pg_dumpall"), "--globals-only", "--no-role-passwords", "-d", conninfo],
        capture_output=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        return None, lines[-1] if lines else f"pg_dumpall exit {proc.returncode}"
    return proc.stdout, "ok"
