"""Verifying a PostgreSQL backup: pg_restore into a scratch database, then row counts.

Apart from verify.py so SQLite verifications never import SQLAlchemy.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from emrops import secrets
from emrops.backup.manifest import Manifest
from emrops.backup.pgdump import libpq_conninfo, pg_facts, pg_tool, tool_error
from emrops.backup.verify import Checks, check_counts
from emrops.db.engine import create_engine, db_errors, oneshot_engine, parse_db_url
from emrops.db.quoting import pg_text, quote_ident
from emrops.errors import UsageError


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``server_url``, dropped afterwards."""
    db = parse_db_url(server_url)
    if db.engine_name != "postgresql":
        raise UsageError(
            "verifying a PostgreSQL backup needs a PostgreSQL server for the scratch database",
            hint="pass --db postgresql+psycopg://user@host/db (CREATE DATABASE permission needed)",
        )
    admin_url = db.url.set(database="postgres")
    name = f"emrops_verify_{uuid.uuid4().hex[:12]}"
    admin = oneshot_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with db_errors(admin_url), admin.connect() as conn:
            conn.exec_driver_sql(pg_text(f"CREATE DATABASE {quote_ident(name)}"))
        try:
            yield db.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with db_errors(admin_url), admin.connect() as conn:
                conn.exec_driver_sql(
                    pg_text(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
                )
    finally:
        admin.dispose()


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


def check_postgres(archive: Path, manifest: Manifest, server_url: str, checks: Checks) -> None:
    with scratch_database(server_url) as scratch:
        code, message = pg_restore(archive, scratch)
        if not checks.add(
            "pg_restore", code == 0, message if code else "restored into a scratch database"
        ):
            return
        engine = create_engine(scratch, pool_size=1, max_overflow=0)
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
