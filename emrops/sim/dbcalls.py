"""Where the sim server runs its (synchronous) database calls, decided per engine.

- **SQLite writes** go to ONE writer thread per database: the server's writers queue in order
  in this process instead of racing for the file lock. With 16 concurrent writers on plain
  threads, all but one slept in SQLite's busy handler on ``BEGIN IMMEDIATE`` (whose backoff
  sleeps grow to 100 ms), which gave POST message a p99 of 762 ms at 937 req/s; in one
  queue, a write waits only for the writes ahead of it. Other processes (``emrops sim
  maintenance``, a restore) still meet the busy timeout as before: the file lock is unchanged.
  Running writes off the event loop also keeps a WAL checkpoint (which syncs the file) or a
  lock held by another process from stalling every other request.
- **SQLite reads** run inline on the event loop. In WAL mode a reader never waits for the
  writer; a read of a page of messages costs ~0.1 ms, less than the hand-over to a thread and
  back (measured: the thread pool hop was a quarter of the server's CPU on GET history). A
  read waits on the file only in a rare case (the WAL index being rebuilt after a crash), and
  then at most the busy timeout.
- **PostgreSQL** calls, reads and writes, go to a thread pool as large as the connection pool:
  every call is a network round trip whose length the server does not control, so it must
  never hold up the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from sqlalchemy.engine import Engine

P = ParamSpec("P")
T = TypeVar("T")


class DbCalls:
    """Runs a database call of one engine where it belongs (see the module docstring)."""

    def __init__(self, engine: Engine, *, threads: int):
        self.inline_reads = engine.dialect.name == "sqlite"
        # SQLite: one writer thread; PostgreSQL: reads and writes share `threads` threads
        self._threads = 1 if self.inline_reads else threads
        self._prefix = "emrsim-sqlite-writer" if self.inline_reads else "emrsim-db"
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``: a call that only reads."""
        if self.inline_reads:
            return fn(*args, **kwargs)
        return await _offload(self._executor(), fn, *args, **kwargs)

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``: a call that writes (on SQLite: one after the other)."""
        return await _offload(self._executor(), fn, *args, **kwargs)

    def close(self) -> None:
        """Let the threads go once the calls queued have run (their requests wait for them).
        Like a disposed engine, a closed DbCalls still works: a later call starts afresh."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix=self._prefix)
                pool = self._pool
        return pool


async def _offload(
    pool: ThreadPoolExecutor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))
