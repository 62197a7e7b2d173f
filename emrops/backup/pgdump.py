"""PostgreSQL snapshots: a REPEATABLE READ transaction exports its snapshot, row counts are
read in it and ``pg_dump -Fc --snapshot=...`` dumps exactly that snapshot; roles come from
``pg_dumpall --globals-only --no-role-passwords`` when the user may read them.

Kept apart from the SQLite snapshot so a SQLite backup never imports SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import sqlalchemy as sa
from sqlalchemy.engine import URL

from emrops import secrets
from emrops.backup.snapshot import Snapshot
from emrops.db import azure_auth
from emrops.db.engine import DbUrl, create_engine, db_errors
from emrops.db.quoting import pg_text, quote_ident
from emrops.errors import DatabaseError, EmropsError


def libpq_conninfo(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq URI without the password, and the environment carrying it (PGPASSWORD: the
    URL's password or, with ``?auth=azure``, an Entra ID token; TLS defaults as PGSSL*)."""
    uri, extra = azure_auth.libpq(url)
    return uri, azure_auth.tool_env(extra)


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


def _key_part(name: str) -> str:
    # Plain names stay as they are (readable, and what manifests before quoting hold); a name
    # with a dot or starting with a quote is written as a quoted identifier, so no two tables
    # share a key: public "a.b" is '"a.b"', table b of schema a is 'a.b'.
    if "." in name or name.startswith('"') or not name:
        return '"' + name.replace('"', '""') + '"'
    return name


def count_key(schema: str, table: str) -> str:
    """The manifest's row-count key of a table: its name in schema public, else
    ``schema.table``, each part quoted (SQL style) when it holds a dot or starts with a quote."""
    if schema == "public":
        return _key_part(table)
    return f"{_key_part(schema)}.{_key_part(table)}"


def legacy_count_key(schema: str, table: str) -> str:
    """The key manifests written before :func:`count_key` used (ambiguous for dotted names)."""
    return table if schema == "public" else f"{schema}.{table}"


def pg_facts(
    conn: sa.Connection, legacy: dict[str, int] | None = None
) -> tuple[dict[str, int], str | None]:
    """Row count per table (keys: :func:`count_key`) and the Alembic revision. ``legacy``,
    when given, is filled with the same counts under the old keys (for old manifests)."""
    counts: dict[str, int] = {}
    revision = None
    for schema, table in pg_tables(conn):
        key = count_key(schema, table)
        counts[key] = int(
            conn.exec_driver_sql(
                pg_text(f"SELECT count(*) FROM {quote_ident(schema)}.{quote_ident(table)}")
            ).scalar()
            or 0
        )
        if legacy is not None:
            legacy[legacy_count_key(schema, table)] = counts[key]
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
                        text = secrets.mask(errors.read().decode(errors="replace"))
                        raise DatabaseError(
                            f"pg_dump of {db.masked()} failed (exit {code}): {tool_error(text)}",
                            hint="a permission error means the user needs SELECT on every "
                            "table (and USAGE on their schemas), and BYPASSRLS or ownership "
                            "where row-level security is forced: e.g. the database's owner"
                            if "permission denied" in text or "row-level security" in text
                            else None,
                        )
    finally:
        engine.dispose()


def tool_error(text: str) -> str:
    """The line of a PostgreSQL tool's stderr that says what failed: its "error:" line (pg_dump
    follows it with "detail: Query was: ..."), else the last line."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if "error:" in line or "ERROR:" in line or "FATAL:" in line:
            return line
    return lines[-1] if lines else "no message"


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
        lines = secrets.mask(proc.stderr.decode(errors="replace")).strip().splitlines()
        return None, lines[-1] if lines else f"pg_dumpall exit {proc.returncode}"
    return proc.stdout, "ok"
