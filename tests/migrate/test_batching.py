"""Batches bounded by bytes: wide rows give small batches, narrow rows full ones, and every
row comes out once, in order."""

from __future__ import annotations

import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from emrops.migrate.batching import RowBudget, approx_bytes, fetch_batches


def test_budget_sizes_the_next_batch_from_the_bytes_seen() -> None:
    sizer = RowBudget(10_000, budget=1_000_000, first=64)
    assert sizer.rows == 64
    sizer.saw(64, 64 * 200_000)  # 200 KB rows
    assert sizer.rows == 5
    sizer.saw(5, 5 * 10)  # tiny rows: capped by max_rows
    assert sizer.rows == 10_000
    sizer.saw(1, 50_000_000)  # one row over the budget: still one row
    assert sizer.rows == 1
    sizer.saw(0, 0)  # an empty batch changes nothing
    assert sizer.rows == 1
    big = RowBudget(10_000, budget=1_000_000)
    big.saw(100, 100)
    big.shrink()
    assert big.rows == 10_000 // 16


def test_approx_bytes_counts_text_and_blobs_by_length() -> None:
    assert approx_bytes([]) == 0
    assert approx_bytes([("abc", b"de", 1, None)]) == 3 + 2 + 8 + 8
    rows = [("x" * 1000,)] * 1000
    assert approx_bytes(rows) == 1_000_000


def _table(rows: list[tuple[int, str]]) -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", rows)
    return conn


def test_wide_rows_come_in_small_batches_and_narrow_rows_in_full_ones() -> None:
    wide = _table([(i, "w" * 100_000) for i in range(200)])
    sizes = [len(b) for b in fetch_batches(wide.execute("SELECT * FROM t"), 5000, 1_000_000)]
    assert sum(sizes) == 200
    assert sizes[0] == 64 and max(sizes[1:]) <= 10  # ~1 MB each after the first
    narrow = _table([(i, "n") for i in range(20_000)])
    sizes = [len(b) for b in fetch_batches(narrow.execute("SELECT * FROM t"), 5000, 1_000_000)]
    assert sizes[:3] == [64, 5000, 5000] and sum(sizes) == 20_000


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=0, max_size=120))
def test_every_row_comes_out_once_in_order(lengths: list[int]) -> None:
    conn = _table([(i, "v" * n) for i, n in enumerate(lengths)])
    got = [
        row[0] for batch in fetch_batches(conn.execute("SELECT * FROM t"), 7, 4096) for row in batch
    ]
    assert got == list(range(len(lengths)))


def _wide_source(path, rows: int, width: int):  # type: ignore[no-untyped-def]
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    conn.executemany(
        "INSERT INTO docs (body) VALUES (?)", [(f"{i:06d}" + "d" * width,) for i in range(rows)]
    )
    conn.commit()
    conn.close()
    return path


def test_sql_chunks_of_wide_rows_stay_near_the_budget_and_too_big_goes_row_by_row(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    from emrops.migrate import sqlcopy
    from emrops.migrate.planner import build_plan, open_source

    src = _wide_source(tmp_path / "wide.db", 400, 50_000)
    conn = open_source(src)
    try:
        (tp,) = build_plan(conn, {}, full=False).tables
        # SQLite refuses to build a string past 1 MB on this connection, as it refuses past
        # 1 GB by default: the first chunk (64 rows x 50 KB) is too big to build at all
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        got = list(sqlcopy.chunks(conn, tp, budget=500_000))
    finally:
        conn.close()
    assert got[0].data is None and got[0].after is None  # that range goes row by row
    built = [c for c in got if c.data is not None]
    assert built and all(len(c.data) <= 1_000_000 for c in built)
    assert max(c.rows for c in built) <= 10  # ~500 KB at 50 KB a row
    # the ranges are contiguous and cover the table: nothing skipped, nothing twice
    assert [c.after for c in got[1:]] == [c.hi for c in got[:-1]]
    assert sum(c.rows for c in built) == 400 - 64


def test_a_table_of_wide_rows_migrates_in_bounded_memory(cli, tmp_path, pg_url) -> None:  # type: ignore[no-untyped-def]
    from tests.migrate.conftest import pg

    src = _wide_source(tmp_path / "wide.db", 300, 100_000)
    run = cli("migrate-db", "run", "--from", f"sqlite:///{src}", "--to", pg_url, "--json")
    assert run.exit_code == 0, run.stderr
    with pg(pg_url) as conn:
        got = conn.execute("SELECT count(*), sum(length(body)), min(body) FROM docs").fetchone()
    assert got[0] == 300 and got[1] == 300 * 100_006 and got[2].startswith("000000")
