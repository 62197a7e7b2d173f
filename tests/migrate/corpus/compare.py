"""Compare query answers from SQLite and PostgreSQL as an app would see them."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any


def norm(v: Any) -> Any:
    """One value in a form both engines' answers share (SQLite keeps types loosely)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, Decimal | float):
        f = float(v)
        return int(f) if f.is_integer() and abs(f) < 2**53 else round(f, 6)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.UTC).replace(tzinfo=None)
        return v.isoformat(" ").removesuffix(".000000")
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, memoryview | bytearray):
        return bytes(v)
    if isinstance(v, uuid.UUID):
        return v.hex
    if isinstance(v, dict | list):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, str):
        if v[:1] in "{[":
            try:
                return json.dumps(json.loads(v), sort_keys=True)
            except ValueError:
                return v
        if len(v) >= 19 and v[4:5] == "-" and v[10:11] in " T":
            try:
                t = dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                return v
            return norm(t)
    return v


def rows(result: list[Any]) -> list[tuple[Any, ...]]:
    """Rows normalised and sorted (views have no order of their own)."""
    out = [tuple(norm(v) for v in r) for r in result]
    return sorted(out, key=repr)
