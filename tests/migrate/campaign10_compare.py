"""An independent check of a migration, for the campaign-10 tests: every source row read
back from PostgreSQL and compared value by value with what SQLite holds (not through the
code under test's canonical text)."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sqlite3
import struct
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.migrate.conftest import pg

_BOOL = {"t": True, "true": True, "y": True, "yes": True, "on": True, "1": True}
_BOOL |= {"f": False, "false": False, "n": False, "no": False, "off": False, "0": False}


def same(sv: Any, pv: Any) -> bool:
    """True when PostgreSQL's value ``pv`` is SQLite's ``sv`` in the target's type."""
    if sv is None or pv is None:
        return sv is None and pv is None
    if isinstance(pv, bool):
        return (_BOOL.get(sv.strip().lower()) if isinstance(sv, str) else sv) == pv
    if isinstance(pv, float):
        if type(sv) is int:  # exactly, not as the nearest double
            return pv.is_integer() and int(pv) == sv
        return isinstance(sv, float) and struct.pack(">d", sv) == struct.pack(">d", pv)
    if isinstance(pv, int):
        return type(sv) is int and sv == pv
    if isinstance(pv, Decimal):
        if isinstance(sv, float) and math.isinf(sv):
            return pv.is_infinite() and (pv > 0) == (sv > 0)
        if isinstance(sv, float):
            return Decimal(repr(sv)) == pv
        return Decimal(str(sv).strip()) == pv
    if isinstance(pv, dt.datetime):
        text = re.sub(r"(\d)\s+([+-]\d\d(:?\d\d)?)$", r"\1\2", sv.strip().replace("Z", "+00:00"))
        s = dt.datetime.fromisoformat(text)
        return (s if s.tzinfo else s.replace(tzinfo=dt.UTC)) == pv
    if isinstance(pv, dt.date):
        return bool(sv == pv.isoformat())
    if isinstance(pv, uuid.UUID):
        return uuid.UUID(sv) == pv
    if isinstance(pv, bytes):
        return bool(sv == pv)
    if isinstance(pv, dict | list):  # as numbers, not as doubles (jsonb's are numeric)
        exact = {"parse_float": Decimal, "parse_int": Decimal}
        return bool(json.loads(sv, **exact) == json.loads(json.dumps(pv), **exact))
    return isinstance(sv, str) and sv == pv


def assert_same_rows(db: Path, pg_url: str, table: str, key: str) -> int:
    """Every row of ``table`` equal on both sides, matched by ``key``; the row count."""
    src = sqlite3.connect(db)
    src.text_factory = bytes
    cols = [r[1].decode() for r in src.execute(f'PRAGMA table_info("{table}")')]
    rows = src.execute(f'SELECT {", ".join(f"{chr(34)}{c}{chr(34)}" for c in cols)} FROM "{table}"')
    kinds = src.execute(
        f'SELECT {", ".join(f"typeof({chr(34)}{c}{chr(34)})" for c in cols)} FROM "{table}"'
    )
    source = {}
    for row, kind in zip(rows.fetchall(), kinds.fetchall(), strict=True):
        values = [v.decode() if k == b"text" else v for v, k in zip(row, kind, strict=True)]
        source[values[cols.index(key)]] = values
    src.close()
    with pg(pg_url) as conn:
        cur = conn.execute(f'SELECT * FROM "{table}"')
        names = [d.name for d in cur.description or []]
        target = {r[names.index(key)]: r for r in cur.fetchall()}
    assert names == cols
    assert len(target) == len(source), (len(source), len(target))
    for k, values in source.items():
        got = target[k]
        for name, sv, pv in zip(cols, values, got, strict=True):
            assert same(sv, pv), (table, k, name, sv, pv)
    return len(source)
