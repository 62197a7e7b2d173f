"""What a running simulation server holds: its database (engine + event hub), the maintenance
flag it polls, the switch to another database on SIGHUP, and the reopen of an SQLite file
replaced under it (:mod:`emrops.sim.reopen`).

Requests take ``state.runtime`` once and use it to the end, so a switch never mixes databases
inside one request; the old engine is disposed after the new one is in place. A reopen of a
replaced file is the exception: the old file's connections are closed *before* the new file is
opened (see :mod:`emrops.sim.reopen` for why), and requests meanwhile get 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from emrops.db.connroom import ROOM_SQL, room_of
from emrops.db.control import Maintenance, get_maintenance
from emrops.db.engine import DbUrl, check_database, create_engine, parse_db_url
from emrops.db.migrations_api import (
    current_revision,
    foreign_revision_error,
    head_revision,
    known_revision,
    refuse_foreign,
)
from emrops.errors import DatabaseError, EmropsError
from emrops.logs import get_logger
from emrops.sim.cached import ScenarioList
from emrops.sim.dbcalls import DbCalls
from emrops.sim.events import LocalHub, make_hub
from emrops.sim.metrics import Metrics, worker_exited
from emrops.sim.reopen import FileGuard, file_id, remove_side_files
from emrops.sim.storage import StorageWatch

log = get_logger(__name__)

MAINTENANCE_POLL_SECONDS = 0.5
INIT_HINT = "run `emrops sim init-db` on this database first"
SWITCH_CLOSE_CODE = 1012  # "service restart": clients reconnect and resume with ?after=
SWITCH_REASON = "database switched: reconnect and resume with ?after=<last message id>"
HUB_CONNECTIONS = 2  # PostgreSQL: the hub's LISTEN and NOTIFY connections (events.PgHub)
DRAIN_SECONDS = 5.0  # how long a reopen waits for requests still on the replaced file


@dataclass
class Runtime:
    """One database in use: URL, engine, hub and the last maintenance state seen; where its
    calls run (:mod:`emrops.sim.dbcalls`) and its cached scenario list."""

    db: DbUrl
    engine: Engine
    hub: LocalHub
    schema_revision: str
    maintenance: Maintenance
    db_ok: bool = True
    file_guard: FileGuard | None = None  # SQLite: the file opened, refused once replaced
    calls: DbCalls = field(init=False)
    scenarios: ScenarioList = field(init=False, default_factory=ScenarioList)
    threads: int = 30  # PostgreSQL: calls in flight at once (the connection pool's size)
    processes: int = 1  # worker processes serving this database (they share its room)
    storage: StorageWatch = field(init=False, default_factory=StorageWatch)  # disk full?

    def __post_init__(self) -> None:
        self.calls = DbCalls(self.engine, threads=self.threads)

    def close(self) -> None:
        """Stop taking database calls and close the engine's connections."""
        self.calls.close()
        self.engine.dispose()

    @property
    def masked_url(self) -> str:
        return self.db.masked()


def open_runtime(
    db_url: str, *, pool_size: int = 10, max_overflow: int = 20, processes: int = 1
) -> Runtime:
    """Connect to ``db_url`` and check it carries the current schema.

    On PostgreSQL the pool is also fitted to the server's room (:mod:`emrops.db.connroom`),
    shared by the ``processes`` workers serving it: 30 connections a worker would outrun a
    small managed server (or a role's CONNECTION LIMIT) as soon as load came, and each request
    past the limit failed. With less room each worker keeps fewer connections (requests then
    wait for one, they do not fail); with none, a DatabaseError.

    Raises UsageError for a bad URL and DatabaseError (with the init-db hint) for an unreachable
    database, a missing schema or a revision this emrops does not serve."""
    db = parse_db_url(db_url)
    path = db.sqlite_path
    if path is not None and not path.exists():
        # Do not create an empty file that would then lack the schema.
        raise DatabaseError(f"database file not found: {path}", hint=INIT_HINT)
    refuse_foreign(db)  # before the read-write engine switches someone else's file to WAL
    # No pre-ping: the data layer retries once on a fresh connection instead (emrops.db.queries).
    threads = pool_size + max_overflow
    if path is None:
        # PostgreSQL: one DB thread holds at most one connection, so the pool keeps as many as
        # there are threads. With overflow connections, every burst above pool_size opened
        # new ones (a backend fork and an authentication each) and closed them again on return:
        # under 16 concurrent POSTs, PostgreSQL spent more CPU starting backends than inserting.
        pool_size, max_overflow = threads, 0
    engine = create_engine(db, pool_size=pool_size, max_overflow=max_overflow, pre_ping=False)
    if path is None:
        fitted = _fit_pool(engine, db, threads, processes)
        if fitted != threads:
            engine.dispose()
            threads = fitted
            engine = create_engine(db, pool_size=threads, max_overflow=0, pre_ping=False)
    file_guard = None
    if path is not None:
        # Taken before the first connection: the guard then refuses any connection to a file
        # that replaced this one between here and the check below.
        opened = file_id(path)
        if opened is None:
            engine.dispose()
            raise DatabaseError(f"database file not found: {path}", hint=INIT_HINT)
        file_guard = FileGuard(path, opened)
        file_guard.install(engine)
    try:
        check_database(engine)
        revision = current_revision(engine)
        head = head_revision()
        if revision is None:
            raise DatabaseError(f"{db.masked()} has no EMRsim schema", hint=INIT_HINT)
        if not known_revision(revision):
            raise foreign_revision_error(db.masked(), revision)
        if revision != head:
            raise DatabaseError(
                f"{db.masked()} is at schema revision {revision}, this emrops serves {head}",
                hint="run `emrops sim init-db` to upgrade it (or use the matching emrops)",
            )
        maintenance = get_maintenance(engine)
    except BaseException:
        engine.dispose()
        raise
    return Runtime(
        db,
        engine,
        make_hub(db),
        revision,
        maintenance,
        file_guard=file_guard,
        threads=threads,
        processes=processes,
    )


def _fit_pool(engine: Engine, db: DbUrl, threads: int, processes: int) -> int:
    """The pool connections one of ``processes`` workers may keep: ``threads``, or its share
    of the server's room when that is less, after the hub's own LISTEN and NOTIFY connections
    (the checking connection is returned to the pool)."""
    try:
        with engine.connect() as conn:
            room = room_of(conn.exec_driver_sql(ROOM_SQL).fetchone())
    except Exception:  # the schema check right after names what is wrong
        return threads
    if room is None or room.free >= (threads + HUB_CONNECTIONS) * processes:
        return threads
    share = room.free // processes - HUB_CONNECTIONS
    if share < 1:
        engine.dispose()
        raise DatabaseError(
            f"{db.masked()} has room for {room.free} connection(s) from this role "
            f"({room.limit}); {processes} worker(s) need at least {1 + HUB_CONNECTIONS} each",
            hint="run fewer --workers, close idle connections, or raise the limit "
            "(max_connections, ALTER ROLE ... CONNECTION LIMIT)",
        )
    log.warning(
        "%s: %d pool connection(s) per worker instead of %d: PostgreSQL has room for %d (%s) "
        "shared by %d worker(s), each also listening on %d; requests beyond that wait",
        db.masked(),
        share,
        threads,
        room.free,
        room.limit,
        processes,
        HUB_CONNECTIONS,
    )
    return share


class SimState:
    """The mutable state of one app: current runtime, settings, metrics, background tasks."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        token: str | None,
        vitals_interval: float,
        retry_after: int,
        metrics: Metrics,
        reloader: Callable[[], str] | None = None,
        maintenance_poll: float = MAINTENANCE_POLL_SECONDS,
    ):
        self.runtime = runtime
        self.token = token or None
        self.vitals_interval = vitals_interval
        self.retry_after = retry_after
        self.metrics = metrics
        self.reloader = reloader
        self.maintenance_poll = maintenance_poll
        self.started_at = time.time()
        self._poller: asyncio.Task[None] | None = None
        self._switch_lock: asyncio.Lock | None = None
        self._reopen_problem = ""  # the last reason a reopen could not happen (logged once)

    async def start(self) -> None:
        await self.runtime.hub.start()
        self._switch_lock = asyncio.Lock()
        self._poller = asyncio.create_task(self._poll_forever(), name="emrsim-maintenance-poll")

    async def stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        runtime = self.runtime
        await runtime.hub.stop()
        runtime.close()
        worker_exited(os.getpid())  # multiprocess metrics: drop this worker's live gauges

    async def poll_once(self) -> None:
        """Read the maintenance flag (and refresh the pool gauges); reopen the SQLite file if
        it was replaced under the server."""
        if await self.reopen_if_replaced("noticed by the maintenance poll"):
            return
        runtime = self.runtime
        try:
            maintenance = await run_in_threadpool(get_maintenance, runtime.engine)
        except EmropsError as exc:
            if runtime.db_ok:
                log.warning("maintenance poll failed: %s", exc)
            runtime.db_ok = False
        else:
            if maintenance.on != runtime.maintenance.on:
                log.info(
                    "maintenance %s%s",
                    "on" if maintenance.on else "off",
                    f": {maintenance.message}" if maintenance.on else "",
                )
            if not runtime.db_ok:
                log.info("database %s reachable again", runtime.masked_url)
            runtime.maintenance = maintenance
            runtime.db_ok = True
        self.metrics.maintenance.set(1 if runtime.maintenance.on else 0)
        self.metrics.update_pool(runtime.engine)

    async def _poll_forever(self) -> None:
        while True:
            await self.poll_once()
            await asyncio.sleep(self.maintenance_poll)

    async def reload(self) -> bool:
        """Re-read the config (SIGHUP); switch databases if the URL changed, else reopen the
        SQLite file if it was replaced. Never raises: a new URL that does not work is logged
        and the current database stays in use."""
        if self.reloader is None:
            if await self.reopen_if_replaced("SIGHUP"):
                return True
            log.info("SIGHUP ignored: this server has no config to re-read")
            return False
        try:
            new_url = await run_in_threadpool(self.reloader)
        except EmropsError as exc:
            log.error("SIGHUP: cannot re-read the config, keeping %s: %s", self._url(), exc)
            return await self.reopen_if_replaced("SIGHUP")
        if parse_db_url(new_url).url == self.runtime.db.url:
            if await self.reopen_if_replaced("SIGHUP"):
                return True
            log.info("SIGHUP: config re-read, database unchanged (%s)", self._url())
            return False
        return await self.switch(new_url)

    async def reopen_if_replaced(self, cause: str) -> bool:
        """If the SQLite file of the current runtime is no longer the one at its path, reopen
        the path: wait (up to DRAIN_SECONDS) for requests still on the old file, close its
        connections, remove its -wal/-shm left at the path, open and check the new file,
        swap, close the old WebSocket streams with 1012. True when reopened. Never raises: a
        path that cannot be opened is logged (once) and requests stay refused by the guard
        until a later poll succeeds."""
        runtime = self.runtime
        guard = runtime.file_guard
        if guard is None or not guard.replaced():
            return False
        path = guard.path
        lock = self._switch_lock or asyncio.Lock()
        async with lock:
            old = self.runtime
            if old is not runtime:
                return True  # reopened (or switched) while we waited for the lock
            if file_id(path) is None:
                self._cannot_reopen(f"the database file {path} was removed; requests get 503")
                return False
            log.warning("the database file %s was replaced (%s): reopening it", path, cause)
            await self._drain(old)
            stale = await run_in_threadpool(guard.left_behind)  # before they are closed
            await run_in_threadpool(old.close)
            for side in await run_in_threadpool(remove_side_files, stale):
                log.info("removed %s: it belonged to the replaced file", side)
            try:
                fresh = await run_in_threadpool(
                    functools.partial(open_runtime, str(old.db), processes=old.processes)
                )
            except EmropsError as exc:
                hint = f" ({exc.hint})" if exc.hint else ""
                self._cannot_reopen(f"cannot reopen {old.masked_url}: {exc}{hint}")
                return False
            await fresh.hub.start()
            self.runtime = fresh
            self._reopen_problem = ""
            log.info("reopened %s: serving the file now at that path", fresh.masked_url)
            await old.hub.stop(SWITCH_CLOSE_CODE, SWITCH_REASON)
        await self.poll_once()
        return True

    async def _drain(self, runtime: Runtime) -> None:
        # The guard refuses new checkouts already; wait for the ones in flight to come back.
        deadline = time.monotonic() + DRAIN_SECONDS
        while runtime.engine.pool.checkedout() > 0:  # type: ignore[attr-defined]
            if time.monotonic() > deadline:
                log.warning(
                    "reopening with %d connection(s) to the replaced file still in use",
                    runtime.engine.pool.checkedout(),  # type: ignore[attr-defined]
                )
                return
            await asyncio.sleep(0.02)

    def _cannot_reopen(self, problem: str) -> None:
        if problem != self._reopen_problem:
            log.error("%s", problem)
            self._reopen_problem = problem

    async def switch(self, new_url: str) -> bool:
        """Serve ``new_url`` from now on: open and check it, start its hub, swap, close the old
        database's WebSocket streams with 1012 (clients resume), dispose the old engine."""
        lock = self._switch_lock or asyncio.Lock()
        async with lock:
            try:
                fresh = await run_in_threadpool(
                    functools.partial(open_runtime, new_url, processes=self.runtime.processes)
                )
            except EmropsError as exc:
                log.error(
                    "cannot switch to the new database, keeping %s: %s%s",
                    self._url(),
                    exc,
                    f" ({exc.hint})" if exc.hint else "",
                )
                return False
            await fresh.hub.start()
            old, self.runtime = self.runtime, fresh
            log.info("switched database from %s to %s", old.masked_url, fresh.masked_url)
            await old.hub.stop(SWITCH_CLOSE_CODE, SWITCH_REASON)
            await run_in_threadpool(old.close)
            await self.poll_once()
            return True

    def _url(self) -> str:
        return self.runtime.masked_url
