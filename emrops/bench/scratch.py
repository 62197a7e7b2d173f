"""Scratch databases: the benchmark never touches the database ``--db`` names.

* SQLite: ``--db sqlite:///dir/app.db`` names *where*: the scratch files are created beside it
  (``dir/app.emrops-bench-<id>.seed.db`` and ``...run.db``) and deleted afterwards, WAL and SHM
  files included. ``app.db`` itself is never opened.
* PostgreSQL: ``--db postgresql+psycopg://user@host/db`` names the *server* (``db`` is only the
  database we connect to in order to run ``CREATE DATABASE``): ``emrops_bench_<id>_seed`` and
  ``emrops_bench_<id>_run`` are created there and dropped afterwards.

Both are seeded once into the ``seed`` database (schema at head, scenarios, ``seed_database``,
``ANALYZE``); every measured cell then starts from a fresh copy of it (a file copy on SQLite,
``CREATE DATABASE ... TEMPLATE`` on PostgreSQL), so writes of one cell never skew the next.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.engine import Engine

from emrops.db import azure_auth
from emrops.db.engine import DbUrl, create_engine, db_errors, translate
from emrops.db.migrations_api import upgrade
from emrops.db.sqlite_file import open_sqlite
from emrops.errors import DatabaseError, UsageError
from emrops.sim.catalog import ensure_scenarios
from emrops.sim.seed import SeedResult, seed_database

SeedProgress = Callable[[int, int], None]


def _sqlite_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


@dataclass
class Scratch:
    """One engine's scratch databases. Use as a context manager: everything is removed on exit."""

    target: DbUrl
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    seeded: SeedResult | None = None
    _created: list[str] = field(default_factory=list)

    @property
    def engine_name(self) -> str:
        return self.target.engine_name

    # names ---------------------------------------------------------------------------------
    def _sqlite_path(self, kind: str) -> Path:
        where = self.target.sqlite_path
        if where is None:
            raise UsageError(
                "SQLite benchmark needs a file path, not :memory:",
                hint="use --db sqlite:///path/to/bench.db (the scratch file is created beside it)",
            )
        if where.is_dir():  # --db sqlite:///some/folder: create the scratch files inside it
            where = where / "bench.db"
        return where.with_name(f"{where.stem}.emrops-bench-{self.token}.{kind}.db")

    def _pg_name(self, kind: str) -> str:
        return f"emrops_bench_{self.token}_{kind}"

    def url(self, kind: str) -> DbUrl:
        """The URL of the ``seed`` or ``run`` scratch database."""
        if self.engine_name == "sqlite":
            return DbUrl(self.target.url.set(database=str(self._sqlite_path(kind))))
        return DbUrl(self.target.url.set(database=self._pg_name(kind)))

    def names(self) -> list[str]:
        """What this scratch creates: file paths (SQLite) or database names (PostgreSQL)."""
        return list(self._created)

    # admin connection (PostgreSQL) ----------------------------------------------------------
    def _admin(self) -> psycopg.Connection:
        conninfo, extra = azure_auth.libpq(self.target.url)
        try:
            return psycopg.connect(conninfo, autocommit=True, connect_timeout=10, **extra)
        except psycopg.Error as exc:
            raise translate(exc, self.target.url) from exc

    def check(self) -> None:
        """Fail early (DatabaseError/UsageError) when the target cannot host scratch databases."""
        if self.engine_name == "sqlite":
            folder = self._sqlite_path("seed").parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the scratch folder {folder}: {exc.strerror}",
                    hint="point --db at a writable folder",
                ) from None
            return
        with self._admin() as conn:
            conn.execute("SELECT 1")

    # lifecycle -----------------------------------------------------------------------------
    def seed(self, sessions: int, messages_per_session: int, seed: int = 1) -> SeedResult:
        """Create and fill the ``seed`` database; returns what the seeder wrote."""
        if self.engine_name == "postgresql":
            self._create_pg(self._pg_name("seed"))
        else:
            path = self._sqlite_path("seed")
            self._created.append(str(path))
        engine = create_engine(self.url("seed"), pool_size=1, max_overflow=0)
        try:
            upgrade(engine)
            ensure_scenarios(engine)
            self.seeded = seed_database(
                engine, sessions=sessions, messages_per_session=messages_per_session, seed=seed
            )
            if self.engine_name == "postgresql":
                with db_errors(engine.url), engine.connect() as conn:
                    conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                        "VACUUM ANALYZE"
                    )
        finally:
            engine.dispose()
        if self.engine_name == "sqlite":
            # outside any transaction: statistics, then fold the WAL into the file we copy
            path = self._sqlite_path("seed")
            try:
                with contextlib.closing(open_sqlite(path, mode="rw", isolation_level=None)) as raw:
                    raw.execute("ANALYZE")
                    raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                raise translate(exc, self.url("seed").url) from exc
        return self.seeded

    def fresh_run(self) -> DbUrl:
        """(Re)create the ``run`` database as a copy of ``seed``; the caller disposes its engines
        before the next call."""
        if self.seeded is None:
            raise RuntimeError("seed() first")
        if self.engine_name == "sqlite":
            run = self._sqlite_path("run")
            for f in _sqlite_files(run):
                f.unlink(missing_ok=True)
            shutil.copyfile(self._sqlite_path("seed"), run)
            if str(run) not in self._created:
                self._created.append(str(run))
            return self.url("run")
        name = self._pg_name("run")
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(self._pg_name("seed"))
                )
            )
        if name not in self._created:
            self._created.append(name)
        return self.url("run")

    def _create_pg(self, name: str) -> None:
        with self._admin() as conn:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.Error as exc:
                raise translate(exc, self.target.url) from exc
        self._created.append(name)

    def cleanup(self) -> None:
        """Remove every scratch file or database this object created (idempotent)."""
        if self.engine_name == "sqlite":
            for name in self._created:
                for f in _sqlite_files(Path(name)):
                    f.unlink(missing_ok=True)
            self._created.clear()
            return
        if not self._created:
            return
        with self._admin() as conn:
            for name in reversed(self._created):
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        self._created.clear()

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, exc_type: object, *_rest: object) -> None:
        try:
            self.cleanup()
        except DatabaseError:
            if exc_type is None:  # otherwise keep the error that got us here
                raise


def open_engine(url: DbUrl, clients: int, sqlite_synchronous: str | None = None) -> Engine:
    """An engine whose pool holds exactly ``clients`` connections, all opened before timing.

    ``sqlite_synchronous`` (``NORMAL``/``FULL``) overrides the data layer's SQLite default,
    for durability parity with PostgreSQL's ``synchronous_commit=on``.
    """
    engine = create_engine(url, pool_size=clients, max_overflow=0, pre_ping=False)
    if engine.dialect.name == "sqlite" and sqlite_synchronous:
        level = sqlite_synchronous.upper()

        # runs after the data layer's own connect hook (listeners run in registration order)
        def _sync(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            dbapi_conn.execute(f"PRAGMA synchronous = {level}")

        sa.event.listen(engine, "connect", _sync)
    # warm the pool: open every connection now, so no client pays for a connect while timed
    with db_errors(engine.url):
        conns = [engine.connect() for _ in range(clients)]
        for conn in conns:
            conn.exec_driver_sql("SELECT 1").scalar()
        for conn in conns:
            conn.close()
    return engine
