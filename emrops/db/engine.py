"""One engine factory for SQLite files and PostgreSQL servers.

SQLite: WAL, busy_timeout, foreign_keys on; plain ``BEGIN`` for reads and
``BEGIN IMMEDIATE`` for writes (see :func:`begin_write`) so writers queue on the
busy timeout instead of failing with "database is locked" at commit.
PostgreSQL: psycopg 3 with a connection pool, pre-ping (unless a hot path opts out) and UTC
session time zone.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from emrops import secrets
from emrops.db import azure_auth, pghints
from emrops.db.sqlite_file import NOT_A_FILE_HINT, Mode, not_a_file, open_sqlite, require_file
from emrops.db.urls import BULK_DEFAULTS, pg_options, sqlite_db_url, whole_name
from emrops.errors import DatabaseError, UsageError

SQLITE_BUSY_TIMEOUT_MS = 10_000

azure_auth.install()  # ?auth=azure tokens and TLS defaults on every PostgreSQL connection


@dataclass(frozen=True)
class DbUrl:
    """A validated database URL."""

    url: URL

    @property
    def engine_name(self) -> str:
        """'sqlite' or 'postgresql'."""
        return "sqlite" if self.url.get_backend_name() == "sqlite" else "postgresql"

    @property
    def sqlite_path(self) -> Path | None:
        if self.engine_name != "sqlite" or not self.url.database or self.url.database == ":memory:":
            return None
        return Path(self.url.database)

    def masked(self) -> str:
        return secrets.mask(self.url.render_as_string(hide_password=False))

    def __str__(self) -> str:
        return self.url.render_as_string(hide_password=False)


def parse_db_url(text: str) -> DbUrl:
    """Validate a database URL; ``postgres://`` and ``postgresql://`` use psycopg 3."""
    raw = str(text).strip()
    whole = whole_name(raw)
    if whole is not None:  # a '?' that belongs to the file's name
        raw = sqlite_db_url(whole)
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw[len("postgres://") :]
    try:
        url = make_url(raw)
    except Exception:
        raise UsageError(
            f"invalid database URL {secrets.mask(text)!r}",
            hint="use sqlite:///path/to/app.db or postgresql+psycopg://user@host:5432/dbname",
        ) from None
    backend = url.get_backend_name()
    if backend == "postgresql":
        if url.drivername in ("postgresql", "postgresql+psycopg2"):
            url = url.set(drivername="postgresql+psycopg")
        if not url.database:
            raise UsageError(
                f"database URL {secrets.mask(text)!r} names no database",
                hint="add the database name: postgresql+psycopg://user@host:5432/dbname",
            )
        azure_auth.auth_mode(url)  # UsageError for an unknown ?auth=
    elif backend == "sqlite":
        if not url.database:
            raise UsageError(
                f"database URL {text!r} names no file",
                hint="use sqlite:///relative/path.db or sqlite:////absolute/path.db",
            )
    else:
        raise UsageError(
            f"unsupported database {backend!r} in {secrets.mask(text)!r}",
            hint="emrops supports sqlite:///path and postgresql+psycopg://...",
        )
    return DbUrl(url)


def _sqlite_on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Take transaction control away from pysqlite so BEGIN is ours (see module doc).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys = ON")
    mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        cur.execute("PRAGMA journal_mode = WAL")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get("emrops_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def create_engine(
    url: str | DbUrl,
    *,
    pool_size: int = 5,
    max_overflow: int = 10,
    echo: bool = False,
    readonly: bool = False,
    create: bool = True,
    pre_ping: bool = True,
    connect_timeout: int = 10,
    bulk: bool = False,
    busy_timeout_s: float | None = None,
) -> Engine:
    """An engine for ``url``. For SQLite the file's folder is created; the file is not checked here
    (use :func:`check_database`). ``readonly`` opens an SQLite file with ``mode=ro`` and changes
    nothing about it (no WAL switch): for tools that read someone else's database.
    ``create=False`` refuses a missing SQLite file (MissingDatabase, exit 1) instead of creating
    it. Every SQLite connection is opened by :func:`emrops.db.sqlite_file.open_sqlite`, so the
    file is exactly the one named whatever characters its path holds.

    ``pre_ping=False`` skips PostgreSQL's liveness round trip on every checkout: for the hot
    paths (sim server, benchmark) whose queries (:mod:`emrops.db.queries`) retry once on a fresh
    connection instead when a pooled one turns out to be dropped.

    ``connect_timeout`` (PostgreSQL, whole seconds, at least 2 as libpq counts it) bounds each
    new connection, a server that accepts and never answers included.

    ``bulk=True`` (backups, verification): the sessions start without the app's
    statement_timeout (see :data:`emrops.db.urls.BULK_DEFAULTS`).

    ``busy_timeout_s`` (read-only SQLite) bounds the wait for a lock another process holds,
    instead of :data:`SQLITE_BUSY_TIMEOUT_MS`: for checks that promise an answer in time."""
    db = url if isinstance(url, DbUrl) else parse_db_url(url)
    if db.engine_name == "sqlite":
        path = db.sqlite_path
        if path is not None:
            kind = not_a_file(path)
            if kind is not None:
                raise UsageError(f"{path} is {kind}, not a database file", hint=NOT_A_FILE_HINT)
            if readonly:
                busy_ms = (
                    SQLITE_BUSY_TIMEOUT_MS
                    if busy_timeout_s is None
                    else max(1, round(busy_timeout_s * 1000))
                )
                return _readonly_sqlite_engine(db, path, pool_size, max_overflow, echo, busy_ms)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            else:
                require_file(path)
            creator = _sqlite_creator(path, "rwc" if create else "rw")
        else:
            creator = None
        engine = sa.create_engine(
            db.url,
            echo=echo,
            **({"creator": creator} if creator else {}),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=max_overflow,
            poolclass=sa.pool.QueuePool,
        )
        sa.event.listen(engine, "connect", _sqlite_on_connect)
        sa.event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa.create_engine(
        db.url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        connect_args={
            "options": pg_options(
                "-c timezone=UTC",
                _query_text(db.url.query.get("options")),
                defaults=BULK_DEFAULTS if bulk else "",
            ),
            "connect_timeout": max(2, connect_timeout),
            **PG_CONNECT_ARGS,
        },
    )


def _query_text(value: Any) -> str | None:
    """A URL query value as one string (SQLAlchemy gives a tuple for a repeated key)."""
    if isinstance(value, tuple):
        return " ".join(value)
    return value if isinstance(value, str) else None


# A SQL_ASCII database hands psycopg bytes for every text value unless the client encoding is
# named, the server's version string included: SQLAlchemy's first connect then failed with
# "unexpected TypeError: cannot use a string pattern on a bytes-like object".
PG_CONNECT_ARGS = {"client_encoding": "utf8"}


def oneshot_engine(url: str | sa.URL, **kwargs: Any) -> Engine:
    """An engine without a pool, for a few statements (identity reads, admin work)."""
    args = PG_CONNECT_ARGS if sa.make_url(url).get_backend_name() == "postgresql" else {}
    return sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=args, **kwargs)


def _sqlite_creator(path: Path, mode: Mode, busy_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> Any:
    def connect() -> sqlite3.Connection:
        return open_sqlite(path, mode=mode, timeout=busy_ms / 1000, check_same_thread=False)

    return connect


def _readonly_sqlite_engine(
    db: DbUrl,
    path: Path,
    pool_size: int,
    max_overflow: int,
    echo: bool,
    busy_ms: int = SQLITE_BUSY_TIMEOUT_MS,
) -> Engine:
    require_file(path)
    engine = sa.create_engine(
        db.url,
        echo=echo,
        creator=_sqlite_creator(path, "ro", busy_ms),
        pool_size=pool_size,
        max_overflow=max_overflow,
        poolclass=sa.pool.QueuePool,
    )

    def on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout = {busy_ms}")

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def begin_write(engine: Engine) -> contextlib.AbstractContextManager[Connection]:
    """A write transaction: ``BEGIN IMMEDIATE`` on SQLite, a normal transaction on PostgreSQL."""
    if engine.dialect.name == "sqlite":
        return engine.execution_options(emrops_write=True).begin()
    return engine.begin()


@contextlib.contextmanager
def db_errors(url: str | DbUrl | URL) -> Iterator[None]:
    """Turn driver errors into DatabaseError naming the (masked) database and a hint."""
    try:
        yield
    except sa.exc.DBAPIError as exc:
        raise translate(exc, url) from exc


def translate(exc: BaseException, url: Any) -> DatabaseError:
    """A DatabaseError for a driver exception, with a hint for the common causes."""
    where = secrets.mask(
        str(url.render_as_string(hide_password=False) if isinstance(url, URL) else url)
    )
    orig = getattr(exc, "orig", exc)
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    hint = pghints.connect_hint(text) or _statement_hint(text.lower())
    return DatabaseError(f"database error on {where}: {secrets.mask(text)}", hint=hint)


def _statement_hint(lowered: str) -> str | None:
    """The hint for a failure that is not about connecting."""
    if "file is not a database" in lowered or "not a database" in lowered:
        return "check that --db points at an SQLite database file"
    if "unable to open database file" in lowered:
        return "check the folder exists and is writable"
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return "initialise the schema with `emrops sim init-db`"
    if "permission denied" in lowered or "row-level security" in lowered:
        return (
            "the database user lacks a privilege: GRANT it, or run as the database's owner (a "
            "backup needs SELECT on every table, USAGE on their schemas, and BYPASSRLS or "
            "ownership where row-level security is forced)"
        )
    return None


def check_database(engine: Engine) -> None:
    """Connect and run a trivial query; raise DatabaseError with a hint when that fails."""
    with db_errors(engine.url), engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1").scalar()
        if engine.dialect.name == "sqlite":
            # SQLite opens anything lazily; reading the schema proves it is a database.
            conn.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()
