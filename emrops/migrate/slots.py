"""The jobs of a migration that fit in the connections the target has room for.

Every copy, index build and verification job holds a PostgreSQL connection, and the run keeps
one more for its journal. The default job count follows the machine's cores (at most
:data:`emrops.machine.MAX_COPY_JOBS`), the server's limits do not (see
:mod:`emrops.db.connroom`): a run that asked for more than is left failed half-way ("too many
connections for role"). So the room is read once at the start and the jobs are lowered to fit,
with a note; with no room for even one job, the run is refused before it creates anything.
Connections others open later can still take the room; that failure has its own hint (see
journal.connect).
"""

from __future__ import annotations

import psycopg

from emrops.db.connroom import ROOM_SQL, Room, room_of
from emrops.errors import DatabaseError

# the run's own connection besides its jobs (journal writes, phase changes)
OVERHEAD = 1


def room(conn: psycopg.Connection) -> Room | None:
    """The room on the server ``conn`` is connected to; None when it cannot be read."""
    try:
        return room_of(conn.execute(ROOM_SQL).fetchone())
    except psycopg.Error:
        return None


def fit_jobs(conn: psycopg.Connection, jobs: int, what: str = "run") -> tuple[int, str | None]:
    """``jobs`` lowered to what the server's room allows, and a note saying so (None when it
    fits or the room is unknown); raises DatabaseError when not even one job fits."""
    found = room(conn)
    if found is None or found.free >= jobs + OVERHEAD:
        return jobs, None
    fitting = found.free - OVERHEAD
    if fitting < 1:
        raise DatabaseError(
            f"PostgreSQL has room for {max(found.free, 0)} connection(s) from this role "
            f"({found.limit}); the {what} needs at least {1 + OVERHEAD}",
            hint="close idle connections (stop the app or shrink its pool) or raise the "
            "limit (ALTER ROLE ... CONNECTION LIMIT, ALTER DATABASE ... CONNECTION LIMIT, "
            "max_connections), then run it again",
        )
    return fitting, (
        f"{fitting} jobs instead of {jobs}: PostgreSQL has room for {found.free} "
        f"connections from this role ({found.limit})"
    )
