"""numeric(p,s) columns whose values would be rounded or refused are anomalies of the plan, each
with its own count and an example row, although the table's numeric(p,s) columns are counted
in one scan."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from emrops.migrate.planner import build_plan, open_source


def _db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(
        'CREATE TABLE m (id INTEGER PRIMARY KEY, ok NUMERIC(6,2), "we ird" NUMERIC(4,1), '
        "big NUMERIC(5,2), note TEXT, t NUMERIC(3,1) DEFAULT (nosuchfn()))"
    )
    rows = [
        (1, 12.5, 1.5, 12.25, "a", 1.5),
        (2, 3, 1.25, 999.99, "b", 2),
        (3, None, 2, 1000, "c", 3),
    ]
    rows += [(4, 1.01, 33.35, -1000.5, "d", None), (5, 7, "text", 5, "e", 1.0)]
    conn.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return path


def test_numeric_fit_counts_each_column(tmp_path: Path) -> None:
    conn = open_source(_db(tmp_path / "n.db"))
    try:
        plan = build_plan(conn, full=False)
    finally:
        conn.close()
    fit = {a.column: a for a in plan.anomalies if a.condition == "numeric_fit"}
    assert set(fit) == {"we ird", "big"}  # ok (6,2) and t (3,1) hold fitting values
    assert fit["we ird"].count == 2  # 1.25 and 33.35: two decimals in numeric(4,1)
    assert fit["we ird"].key == {"rowid": 2} and fit["we ird"].value == 1.25
    assert "numeric(4,1)" in fit["we ird"].message
    assert fit["big"].count == 2  # 1000 and -1000.5: four integer digits in numeric(5,2)
    assert fit["big"].key == {"rowid": 3} and fit["big"].value == 1000
    # t's default does not translate: its anomaly is still reported, after the value checks
    cols = [a.column for a in plan.anomalies]
    assert "t" in cols
    assert cols.index("we ird") < cols.index("big") < cols.index("t")


def test_fit_is_counted_for_the_type_the_column_gets(tmp_path: Path) -> None:
    """The profile's scan counts the fit for the declared NUMERIC(p,s), an index leading the
    column included (it is counted over the index's groups); a column whose cast rule makes
    it unbounded numeric has nothing to fit."""
    path = _db(tmp_path / "n.db")
    raw = sqlite3.connect(path)
    raw.execute("CREATE INDEX m_big ON m (big)")
    raw.commit()
    raw.close()
    conn = open_source(path)
    try:
        default = build_plan(conn, full=False)
        ruled = build_plan(conn, {"m": {"big": {"type": "numeric"}}}, full=False)
    finally:
        conn.close()

    def fit(plan: object) -> dict[str, int]:
        return {a.column: a.count for a in plan.anomalies if a.condition == "numeric_fit"}  # type: ignore[attr-defined]

    assert fit(default) == {"we ird": 2, "big": 2}
    assert fit(ruled) == {"we ird": 2}
