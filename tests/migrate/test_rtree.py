"""An R*Tree virtual table holds the only copy of its rows (its shadow tables keep them as
node blobs): it is copied as a plain table of its id, bounds and auxiliary columns, verified,
with a note on the spatial index; it was left out with only a note (run exit 0)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import pg


def test_rtree_tables_are_copied_and_verified(cli, tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "geo.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE VIRTUAL TABLE geo USING rtree(id, minx, maxx, miny, maxy, +name)")
    conn.execute("CREATE VIRTUAL TABLE grid USING rtree_i32(id, x0, x1)")
    rows = [(i, i * 0.5, i * 0.5 + 1, -i * 0.25, 1.0, f"p{i}") for i in range(1, 3001)]
    conn.executemany("INSERT INTO geo VALUES (?, ?, ?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO grid VALUES (7, -3, 4)")
    conn.commit()
    expected = conn.execute("SELECT * FROM geo ORDER BY id").fetchall()
    conn.close()
    url = f"sqlite:///{source}"
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    out = json.loads(plan.stdout)
    assert sorted(t["source"] for t in out["tables"]) == ["geo", "grid"]  # no shadow tables
    assert any(n.startswith("geo: R*Tree (rtree) table copied") for n in out["notes"])
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    with pg(pg_url) as pgc:
        got = pgc.execute("SELECT id, minx, maxx, miny, maxy, name FROM geo ORDER BY id").fetchall()
        grid = pgc.execute("SELECT id, x0, x1 FROM grid").fetchall()
    assert [tuple(float(v) if isinstance(v, float) else v for v in r) for r in got] == expected
    assert grid == [(7, -3, 4)]
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr
