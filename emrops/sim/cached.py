"""The scenario list, cached per database as the JSON body the API answers.

Scenarios change only when someone edits the database by hand or re-seeds it, and
``GET /api/scenarios`` is what every client calls first. The body is re-read at most every
:data:`emrops.db.queries.PROFILE_TTL_S` seconds: the same staleness bound as the patient profiles
the data layer caches, so an edited scenario is seen by the list and by the replies within that
time. A switch or reopen of the database starts with an empty cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.engine import Engine

from emrops.db import queries
from emrops.sim import wire
from emrops.sim.dbcalls import DbCalls


class ScenarioList:
    """The body of ``GET /api/scenarios`` for one database, at most ``ttl_s`` old."""

    def __init__(
        self,
        ttl_s: float = queries.PROFILE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl_s = ttl_s
        self.clock = clock
        self._body: bytes | None = None
        self._loaded_at = 0.0

    async def body(self, engine: Engine, calls: DbCalls) -> bytes:
        now = self.clock()
        if self._body is None or now - self._loaded_at >= self.ttl_s:
            # Concurrent misses each read the table: harmless, and no lock to wait on.
            rows = await calls.read(queries.list_scenarios, engine)
            self._body, self._loaded_at = wire.scenario_list(rows), now
        return self._body
