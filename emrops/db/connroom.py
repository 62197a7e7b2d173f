"""How many more connections a role may open to a PostgreSQL database, and which limit says so.

A server's room is the tightest of ``max_connections`` less the reserved slots, the role's
``CONNECTION LIMIT`` and the database's, each less the client connections open now.
Superusers are held to ``max_connections`` alone (PostgreSQL exempts them from the rest and
lets them use the reserved slots). The connection that asks is counted as free: it is the
caller's own. A managed server's small tier allows 35-50 connections with some reserved for the
provider, and the app's pool holds its share, so this is read before starting parallel work,
not assumed from the core count. It is a snapshot: others may take the room later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROOM_SQL = """
SELECT r.rolsuper, r.rolconnlimit, d.datconnlimit,
       current_setting('max_connections')::int,
       current_setting('superuser_reserved_connections')::int,
       coalesce(nullif(current_setting('reserved_connections', true), '')::int, 0),
       count(*) FILTER (WHERE a.usesysid = r.oid),
       count(*) FILTER (WHERE a.datid = d.oid),
       count(a.pid)
FROM pg_roles r
JOIN pg_database d ON d.datname = current_database()
LEFT JOIN pg_stat_activity a ON a.backend_type = 'client backend'
WHERE r.rolname = current_user
GROUP BY r.oid, r.rolsuper, r.rolconnlimit, d.oid, d.datconnlimit
"""


@dataclass(frozen=True)
class Room:
    """Connections this role may still open to this database (counting the one that asked),
    and the limit that decides it, for messages."""

    free: int
    limit: str


def room_of(row: Any) -> Room | None:
    """The :class:`Room` from a row of :data:`ROOM_SQL` (None: no row)."""
    if row is None:
        return None
    superuser, role_limit, db_limit, max_conn, su_reserved, reserved, by_role, by_db, total = row
    # the asking connection is counted in each total but is the run's own: it stays free
    choices = [
        (
            max_conn - total + 1 - (0 if superuser else su_reserved + reserved),
            f"max_connections = {max_conn}"
            + ("" if superuser else f", {su_reserved + reserved} reserved")
            + f", {total - 1} others open",
        )
    ]
    if not superuser and role_limit >= 0:
        choices.append(
            (
                role_limit - by_role + 1,
                f"the role's CONNECTION LIMIT {role_limit}, {by_role - 1} others open",
            )
        )
    if not superuser and db_limit >= 0:
        choices.append(
            (
                db_limit - by_db + 1,
                f"the database's CONNECTION LIMIT {db_limit}, {by_db - 1} others open",
            )
        )
    free, limit = min(choices)
    return Room(free, limit)
