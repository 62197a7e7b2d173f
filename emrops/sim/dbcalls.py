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
        if self.inline_reads:
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="emrsim-sqlite-writer")
            self._reads: ThreadPoolExecutor | None = None
        else:
            self._writes = ThreadPoolExecutor(threads, thread_name_prefix="emrsim-db")
            self._reads = self._writes

    async def read(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``: a call that only reads."""
        if self._reads is None:
            return fn(*args, **kwargs)
        return await _offload(self._reads, fn, *args, **kwargs)

    async def write(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``: a call that writes (on SQLite: one after the other)."""
        return await _offload(self._writes, fn, *args, **kwargs)

    def close(self) -> None:
        """No new calls; the ones queued still run (their requests are waiting for them)."""
        self._writes.shutdown(wait=False)


async def _offload(
    pool: ThreadPoolExecutor, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs
) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool, functools.partial(fn, *args, **kwargs))
