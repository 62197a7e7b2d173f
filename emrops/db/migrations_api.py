"""Run the Alembic migrations programmatically and read schema revisions."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Engine

from emrops.db.engine import DbUrl, create_engine, db_errors, parse_db_url
from emrops.errors import DatabaseError

# tables emrops itself may have put in a database that has no EMRsim schema yet
_OWN = {"alembic_version", "emrops_control"}

MIGRATIONS = Path(__file__).parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    """The newest schema revision this emrops knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, or None when it has never been initialised."""
    with db_errors(engine.url), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def known_revision(revision: str) -> bool:
    """True when ``revision`` is one of this emrops's schema revisions."""
    try:
        return ScriptDirectory.from_config(_config()).get_revision(revision) is not None
    except CommandError:
        return False


def foreign_revision_error(masked_url: str, revision: str) -> DatabaseError:
    return DatabaseError(
        f"{masked_url} holds schema revision {revision!r}, which is no EMRsim revision this "
        "emrops knows: it is another application's database (or one a newer emrops upgraded)",
        hint="point --db at the EMRsim database (or use the emrops that made it); emrops never "
        "changes a schema it does not know",
    )


def _refuse_foreign(engine: Engine, before: str | None) -> None:
    """Refuse to build the EMRsim schema into another application's database: one whose
    alembic_version names a revision emrops does not know, or that holds tables but no
    EMRsim schema (created into it, the app tables would sit among someone else's)."""
    shown = engine.url.render_as_string(hide_password=True)
    if before is not None and not known_revision(before):
        raise foreign_revision_error(shown, before)
    if before is None:
        with db_errors(engine.url), engine.connect() as conn:
            others = sorted(set(sa.inspect(conn).get_table_names()) - _OWN)
        if others:
            listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
            raise DatabaseError(
                f"{shown} holds {len(others)} table(s) ({listed}) but no EMRsim schema: it is "
                "not an EMRsim database, and nothing was created in it",
                hint="point --db at the EMRsim database, or at a new file or an empty "
                "database for a new one",
            )


def refuse_foreign(url: str | DbUrl) -> None:
    """:func:`_refuse_foreign` (and, on PostgreSQL, a database not in UTF-8), checked over a
    read-only connection before any read-write one:
    the data layer's read-write SQLite connections switch the file to WAL, which would change
    another application's database even when the command then refuses it. A missing or
    empty SQLite file is a new database (nothing to check)."""
    db = url if isinstance(url, DbUrl) else parse_db_url(url)
    path = db.sqlite_path
    if db.engine_name == "sqlite" and (
        path is None or not path.is_file() or path.stat().st_size == 0
    ):
        return
    engine = create_engine(db, readonly=True)
    try:
        if db.engine_name == "postgresql":
            _refuse_non_utf8(engine)
        _refuse_foreign(engine, current_revision(engine))
    finally:
        engine.dispose()


def _refuse_non_utf8(engine: Engine) -> None:
    """EMRsim stores chat text in any language: a database in LATIN1 (or SQL_ASCII) cannot
    hold it, and every message outside that encoding would fail (a 500) or be stored as other
    characters."""
    with db_errors(engine.url), engine.connect() as conn:
        encoding = conn.exec_driver_sql("SHOW server_encoding").scalar()
    if isinstance(encoding, bytes):  # psycopg's text from an SQL_ASCII database
        encoding = encoding.decode("ascii", "replace")
    if encoding != "UTF8":
        database = engine.url.database
        raise DatabaseError(
            f"database {database} uses the encoding {encoding}: EMRsim's text is Unicode",
            hint=f"use a UTF-8 database: createdb -E UTF8 -T template0 {database}",
        )


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the schema to ``revision``; returns (before, after). Refuses (DatabaseError,
    nothing changed) a database that is not EMRsim's (see :func:`_refuse_foreign`)."""
    before = current_revision(engine)
    _refuse_foreign(engine, before)
    cfg = _config()
    with db_errors(engine.url), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
    after = current_revision(engine)
    assert after is not None
    return before, after
