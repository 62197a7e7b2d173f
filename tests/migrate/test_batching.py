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
