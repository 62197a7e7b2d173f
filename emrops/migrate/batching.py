"""Batches bounded by bytes as well as by rows.

A fixed number of rows per batch is right for narrow rows and wrong for wide ones: 10,000 rows
of 200 KB documents is a 2 GB COPY chunk, past SQLite's 1 GB string limit ("string or blob too
big") and as much memory. Every reader of source rows (the SQL-built COPY chunks, the row-by-row
copy, the source checksums) sizes its next batch from the bytes per row it has just seen:
:class:`RowBudget`. The first batch is small, so one wide table cannot blow the budget before
its width is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

BUDGET = 16 << 20  # bytes of row values per batch or chunk
FIRST_ROWS = 64  # rows of the first batch, before any row's size is known


class RowBudget:
    """Rows for the next batch: at most ``max_rows``, and about ``budget`` bytes at the bytes
    per row seen last (at least one row)."""

    def __init__(self, max_rows: int, budget: int = BUDGET, first: int = FIRST_ROWS) -> None:
        self.max_rows = max(1, int(max_rows))
        self.budget = max(1, int(budget))
        self.rows = max(1, min(first, self.max_rows))

    def saw(self, rows: int, nbytes: int) -> None:
        """Record that the last batch of ``rows`` rows held ``nbytes`` bytes."""
        if rows <= 0:
            return
        per_row = max(nbytes / rows, 1.0)
        self.rows = max(1, min(self.max_rows, int(self.budget / per_row)))

    def shrink(self) -> None:
        """The last batch was too big to build at all: a sixteenth of it next time."""
        self.rows = max(1, self.rows // 16)


def approx_bytes(rows: Sequence[Sequence[Any]], sample: int = 32) -> int:
    """About how many bytes the values of ``rows`` hold: text and blobs by length, anything
    else as 8, measured on up to ``sample`` rows spread over the batch and scaled up."""
    n = len(rows)
    if n == 0:
        return 0
    step = max(1, n // sample)
    total = seen = 0
    for row in rows[::step]:
        seen += 1
        for v in row:
            total += len(v) if isinstance(v, str | bytes | bytearray | memoryview) else 8
    return total * n // seen


def fetch_batches(cur: Any, max_rows: int, budget: int = BUDGET) -> Iterator[list[Any]]:
    """``cur.fetchmany`` batches of at most ``max_rows`` rows and about ``budget`` bytes."""
    sizer = RowBudget(max_rows, budget)
    while batch := cur.fetchmany(sizer.rows):
        yield batch
        sizer.saw(len(batch), approx_bytes(batch))
