"""The profile's ISO-8601 test: a cheap shape GLOB plus julianday() judges every value as the
strict digit-class GLOB did."""

from __future__ import annotations

import random
import sqlite3

from emrops.migrate.convert import parse_ts
from emrops.migrate.profile import CONDITIONS

STRICT = (
    "typeof({c}) = 'text' AND {c} GLOB "
    "'[0-9][0-9][0-9][0-9]-[0-1][0-9]-[0-3][0-9][ T][0-2][0-9]:[0-5][0-9]*' "
    # a zone of hours alone (+05) or without its colon (+0530) completed as julianday() needs
    "AND julianday(CASE WHEN {c} GLOB '*[+-][0-9][0-9]' THEN {c} || ':00' "
    "WHEN {c} GLOB '*[+-][0-9][0-9][0-9][0-9]' THEN substr({c}, 1, length({c}) - 2) || ':' "
    "|| substr({c}, -2) ELSE {c} END) IS NOT NULL"
    # days that exist (PostgreSQL refuses 2024-02-30 and year 0)
    " AND {c} >= '0001' AND date(substr({c}, 1, 10), '+0 days') = substr({c}, 1, 10)"
    " AND {c} NOT GLOB '??????????[ T]2[4-9]*'"  # hour 24, which julianday() takes
)


def _values() -> list[object]:
    rng = random.Random(7)
    base = "2024-01-31 23:59:59.123456"
    alphabet = "0123456789-: T.Z+xé٣２"
    values: set[str] = {
        "2024-01-31T23:59:59Z",
        "2024-01-31 23:59",
        "2024-13-01 10:00",
        "2024-01-32 10:00",
        " 2024-01-01 10:00",
        "-123-01-01 10:00",
        "２０２４-01-01 10:00",
        "2024-01-01  9:00",
        "2024-01-01",
        "2024-02-30 10:00",
        "2024-02-29 00:00",
        "2023-02-29 00:00",
        "0000-01-01 10:00",
        "2024-01-31 24:00:00",
        "2024-01-31 24:59:59",
        "2024-01-31 23:59:59-12",
        "2024-01-31 23:59:59.1+0530",
    }
    for _ in range(20_000):
        chars = list(base)
        for _ in range(rng.randint(1, 3)):
            chars[rng.randrange(len(chars))] = rng.choice(alphabet)
        values.add("".join(chars[: rng.randint(10, 26)] if rng.random() < 0.2 else chars))
    return [*sorted(values), 20240131, 1.5, b"2024-01-31 23:59", None]


def test_iso_test_agrees_with_the_strict_one() -> None:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (v)")
    conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in _values()])
    mine = CONDITIONS["iso"].format(c="v")
    strict = STRICT.format(c="v")
    disagree = conn.execute(f"SELECT v FROM t WHERE ({mine}) IS NOT ({strict})").fetchall()
    assert disagree == []
    counted = conn.execute(f"SELECT count(*) FROM t WHERE {mine}").fetchone()[0]
    assert 100 < counted < 20_000  # both kinds are present: the test can tell them apart
    iso = {r[0] for r in conn.execute(f"SELECT v FROM t WHERE {mine}")}
    assert {"2024-01-31T23:59:59Z", "2024-01-31 23:59"} <= iso
    assert not {"2024-13-01 10:00", "2024-01-01", "２０２４-01-01 10:00"} & iso
    assert not {"2024-02-30 10:00", "0000-01-01 10:00", "2023-02-29 00:00"} & iso
    assert "2024-02-29 00:00" in iso
    # what the test accepts, the copy's converter (and so PostgreSQL) reads
    for value in iso:
        parse_ts(value)
    assert {"2024-01-31 23:59:59.1+0530", "2024-01-31 23:59:59-12"} <= iso
    assert not {"2024-01-31 24:00:00", "2024-01-31 24:59:59"} & iso
