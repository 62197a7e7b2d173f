"""The emrops_control table: the maintenance flag every sim instance polls."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from emrops.db.engine import begin_write, db_errors
from emrops.db.quoting import quote_ident
from emrops.db.schema import emrops_control
from emrops.db.types import utcnow

MAINTENANCE_KEY = "maintenance"


@dataclass(frozen=True)
class Maintenance:
    on: bool
    message: str
    since: datetime | None


def read_maintenance(conn: Connection) -> Maintenance:
    row = conn.execute(
        sa.select(emrops_control.c.value, emrops_control.c.updated_at).where(
            emrops_control.c.key == MAINTENANCE_KEY
        )
    ).first()
    if row is None:
        return Maintenance(False, "", None)
    value: dict[str, Any] = row.value or {}
    return Maintenance(bool(value.get("on")), str(value.get("message") or ""), row.updated_at)


def get_maintenance(engine: Engine) -> Maintenance:
    with db_errors(engine.url), engine.connect() as conn:
        return read_maintenance(conn)


def set_maintenance(engine: Engine, on: bool, message: str = "") -> Maintenance:
    """Switch maintenance mode on or off for every instance using this database."""
    now = utcnow()
    value = {"on": on, "message": message or ("down for maintenance" if on else "")}
    with db_errors(engine.url), begin_write(engine) as conn:
        if engine.dialect.name == "postgresql":
            # Writes read the flag row FOR SHARE (a ROW SHARE lock on the table, row or no
            # row). EXCLUSIVE waits for every write in flight and holds new ones until this
            # commits, also when the row does not exist yet (FOR SHARE on no row locks no
            # row, so the first switch-on would otherwise race with writes in flight).
            conn.exec_driver_sql(f"LOCK TABLE {quote_ident(emrops_control.name)} IN EXCLUSIVE MODE")
        updated = conn.execute(
            emrops_control.update()
            .where(emrops_control.c.key == MAINTENANCE_KEY)
            .values(value=value, updated_at=now)
        ).rowcount
        if not updated:
            conn.execute(
                emrops_control.insert().values(key=MAINTENANCE_KEY, value=value, updated_at=now)
            )
    return Maintenance(on, str(value["message"]), now)
