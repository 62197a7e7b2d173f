"""Reals on the SQL-built COPY path: every double read back from PostgreSQL has the bits of the
SQLite value, every numeric the value the per-row path loads, and the fallback catches what
SQLite cannot print exactly."""

from __future__ import annotations

import math
import random
import sqlite3
import struct
from pathlib import Path

from emrops.migrate import sqlcopy, srchash
from emrops.migrate.convert import canon_function
from emrops.migrate.copy import RejectWriter, copy_table
from emrops.migrate.verify import target_checksum
from tests.migrate.conftest import pg
from tests.migrate.test_sqlcopy import _create, _dump, _plan

EDGE = [
    0.0,
    -0.0,  # kept by an untyped column; printf prints it as 0.0 (Python's fallback keeps the sign)
    5e-324,  # smallest subnormal
    2.225073858507201e-308,  # largest subnormal
    2.2250738585072014e-308,  # smallest normal
    1e-300,
    -1e-300,
    1e-5,
    0.1,
    0.30000000000000004,
    1 / 3,
    36.65,
    1.15,
    123.0,  # a REAL column stores it as an integer on disk
    2.0**53,
    2.0**53 + 2,
    1e16,
    1e16 + 2,
    1e90,
    1e100,
    1.1089281961459624e303,  # SQLite prints it one unit off
    1.7976931348623157e308,
    -1.7976931348623157e308,
    math.inf,
    -math.inf,
]
# integers in an untyped column beside reals: within 2^53, where a double holds each exactly
# (past it the column is numeric since session 10, test_campaign10.py; these stay reals)
INTS = [0, 1, -1, 2**53, -(2**53), 2**53 + 1, 2**63 - 1, -(2**63)]
INTS = [n if abs(n) <= 2**53 else float(n) for n in INTS]


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


def _random_doubles(n: int) -> list[float]:
    rng = random.Random(7)
    out: list[float] = []
    while len(out) < n:
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if not math.isnan(x):
            out.append(x)
    return out


def _reals_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE f (id INTEGER PRIMARY KEY, r REAL, u, d DOUBLE NOT NULL)")
    values = EDGE + _random_doubles(3000) + [v / 7 for v in range(-500, 500)]
    rows = [(i, v, v, v) for i, v in enumerate(values, 1)]
    rows += [(len(rows) + 1 + j, None, n, float(n)) for j, n in enumerate(INTS)]
    conn.executemany("INSERT INTO f VALUES (?, ?, ?, ?)", rows)
    conn.execute(
        "CREATE TABLE n (id INTEGER PRIMARY KEY, a NUMERIC, b NUMERIC(4,1), c DECIMAL(12,4))"
    )
    rng = random.Random(3)
    nums = [
        0.0,
        -0.0,
        0.1,
        36.65,
        1.15,
        1.25,
        -1.05,
        999.9,
        99.95,
        123.0,
        1e-5,
        0.30000000000000004,
    ]
    nums += [round(rng.uniform(-999, 999), rng.randint(0, 4)) for _ in range(2000)]
    nums += [rng.uniform(-999, 999) for _ in range(1000)]
    # numeric(p, s) columns hold values that fit (others are plan anomalies)
    rows = [(i, v, round(v, 1), round(v, 4)) for i, v in enumerate(nums, 1)]
    rows += [(len(rows) + 1, 7, 7, 7), (len(rows) + 2, 2**62, None, None)]
    rows += [(len(rows) + 1, 1e16, 0, 0)]
    conn.executemany("INSERT INTO n VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def test_fast_numeric_canonical_equals_the_decimal_one() -> None:
    from emrops.migrate.convert import _canon_numeric

    rng = random.Random(9)
    values: list[float | int] = [0, 7, -3, 2**62, 0.0, -0.0, 0.5, -0.5, -0.05, 1e16, 1e-5, 99.95]
    values += [round(rng.uniform(-1e6, 1e6), rng.randint(0, 6)) for _ in range(20_000)]
    values += [x for x in _random_doubles(20_000) if not math.isinf(x)]
    for scale in (None, 0, 1, 2, 4):
        canon = _canon_numeric(scale)
        for v in values:
            if scale is None or abs(v) < 1e20:  # (quantize overflows Decimal's context)
                assert canon(v) == canon.exact(v), (scale, v)  # type: ignore[attr-defined]


def test_library_printf_round_trips_in_range() -> None:
    # the check the copy relies on, over a much bigger sample than it runs per process
    assert sqlcopy.printf_exact(200_000)


def test_reals_load_bit_for_bit_on_the_sql_path(tmp_path: Path, pg_url: str) -> None:
    src = _reals_db(tmp_path / "reals.db")
    plan = _plan(src)
    by_name = {t.source: t for t in plan.tables}
    with sqlite3.connect(src) as conn:
        stored = {t: {r[0]: r[1:] for r in conn.execute(f"SELECT * FROM {t}")} for t in ("f", "n")}
    for name in ("f", "n"):
        tp = by_name[name]
        assert all(c.fast for c in tp.columns), name
        assert sqlcopy.line_sql(tp) is not None, name
        with sqlite3.connect(src) as conn:
            data = b"".join(c.data or b"" for c in sqlcopy.chunks(conn, tp))
        assert b"\x00" not in data
        _create(pg_url, tp)
        copy_table(src, pg_url, tp, rejects=None)
        sql_dump = _dump(pg_url, tp)
        with sqlite3.connect(src) as conn:  # the SQL-built row text (no exact-path fallback)
            fast = srchash.fast_checksum(conn, tp)
        with pg(pg_url) as conn:
            assert target_checksum(conn, tp) == fast == srchash.source_checksum(src, tp)[:2]
        copy_table(src, pg_url, tp, rejects=None, sql_text=False)
        assert sql_dump == _dump(pg_url, tp), name
    # doubles: the printf form in the common range, Python's repr outside it
    assert b"\t0.10000000000000001\t" in _chunk_text(src, by_name["f"])
    assert b"\t-0.0\t" in _chunk_text(src, by_name["f"])  # untyped column kept the sign
    with pg(pg_url) as conn:
        got = {
            r[0]: r[1:]
            for r in conn.execute("SELECT id, float8send(r), float8send(u), float8send(d) FROM f")
        }
        for key, values in stored["f"].items():
            for v, bits in zip(values, got[key], strict=True):
                if v is None:
                    assert bits is None
                else:  # an integer in the untyped column: the nearest double, as Python has it
                    assert bytes(bits) == _bits(float(v)), (key, v)
        tp = by_name["n"]
        canon = [canon_function(c.pg_type) for c in tp.columns[1:]]
        got = {r[0]: r[1:] for r in conn.execute("SELECT id, a::text, b::text, c::text FROM n")}
        for key, values in stored["n"].items():
            want = tuple(None if v is None else f(v) for f, v in zip(canon, values, strict=True))
            assert got[key] == want, (key, values)
        # the shortest repr reached PostgreSQL, not 17 digits (36.649999999999999)
        assert conn.execute("SELECT a::text, b::text FROM n WHERE id = 4").fetchone() == (
            "36.65",
            "36.6",
        )
        assert conn.execute("SELECT a::text FROM n WHERE id = 11").fetchone()[0] == "0.00001"


def _chunk_text(src: Path, tp) -> bytes:  # type: ignore[no-untyped-def]
    with sqlite3.connect(src) as conn:
        return b"".join(c.data or b"" for c in sqlcopy.chunks(conn, tp))


def test_a_stale_plan_sends_a_text_real_row_by_row(tmp_path: Path, pg_url: str) -> None:
    """Text stored in a REAL column after profiling is not printed: its chunk goes to the
    per-row path, which rejects that row and loads the others exactly."""
    src = _reals_db(tmp_path / "reals.db")
    tp = next(t for t in _plan(src).tables if t.source == "f")
    with sqlite3.connect(src) as conn:
        conn.execute("UPDATE f SET d = 'not a number' WHERE id = 9")
    with sqlite3.connect(src) as conn:
        chunks = list(sqlcopy.chunks(conn, tp))
    assert chunks[0].data is None
    _create(pg_url, tp)
    result = copy_table(src, pg_url, tp, rejects=RejectWriter(tmp_path / "rejects.jsonl"))
    assert result.rejected_keys == [9]
    with pg(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM f WHERE id = 9").fetchone()[0] == 0
        bits = conn.execute("SELECT float8send(d) FROM f WHERE id = 10").fetchone()[0]
    assert bytes(bits) == _bits(0.30000000000000004)


def test_short_reals_need_no_python(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A numeric real whose SQLite text reads back as itself is printed by SQLite, on the copy
    path and in the verification's canonical text, and both equal what Python computes."""
    assert sqlcopy.short_exact()
    rng = random.Random(11)
    values = [round(rng.uniform(-99999, 99999), rng.randint(0, 6)) for _ in range(20_000)]
    values += [rng.uniform(-1e5, 1e5) for _ in range(2000)]  # 16-17 digits: Python's
    values += [0.1, -0.0, 0.0, 1e-4, 9.5e-5, 12345678901234.5, 1e15, 2.5]
    path = tmp_path / "short.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE s (id INTEGER PRIMARY KEY, a NUMERIC, b NUMERIC(20,0), c NUMERIC(24,3))"
    )
    conn.executemany(
        "INSERT INTO s VALUES (?, ?, ?, ?)",
        [(i, v, round(v), round(v, 3)) for i, v in enumerate(values, 1)],
    )
    conn.commit()
    conn.close()
    tp = _plan(path).tables[0]
    assert all(c.fast for c in tp.columns)
    calls: list[object] = []
    real_text = sqlcopy.real_text

    def counted(v: object) -> str:
        calls.append(v)
        return real_text(v)

    monkeypatch.setattr(sqlcopy, "real_text", counted)
    with sqlite3.connect(path) as conn:
        data = b"".join(c.data or b"" for c in sqlcopy.chunks(conn, tp))
        lines = data.decode().splitlines()
        stored = conn.execute("SELECT * FROM s ORDER BY id").fetchall()
        assert len(lines) == len(stored) == len(values)
        for line, row in zip(lines, stored, strict=True):  # the per-row path's text
            assert line == "\t".join(real_text(v) for v in row), (line, row)
        assert 0 < len(calls) < len(values) // 4  # the 16-17 digit reals, exponent forms
        canon = [canon_function(c.pg_type) for c in tp.columns]
        row_sql = srchash.row_sql(conn, tp)
        for (text,), row in zip(
            conn.execute(f"SELECT {row_sql} FROM s ORDER BY id"),
            conn.execute("SELECT * FROM s ORDER BY id"),
            strict=True,
        ):
            assert text == "\x1f".join(f(v) for f, v in zip(canon, row, strict=True)), row
