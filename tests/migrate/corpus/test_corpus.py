"""The corpus: twelve real-world-shaped SQLite databases through `run` and `verify`.

Each must migrate with exit 0 and give the same answers on both sides to its app queries and
to a SELECT of every view, or exit 3 naming only objects docs/migrate.md lists as
intentionally unsupported.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from emrops.migrate.casts import load_casts
from emrops.migrate.planner import build_plan, open_source
from tests.migrate.conftest import pg, sha256
from tests.migrate.corpus.cases import CASES, L63, Case
from tests.migrate.corpus.compare import rows


def _migrate(cli, case: Case, tmp_path: Path, pg_url: str) -> tuple[Path, list[str], Path | None]:
    db = case.build(tmp_path / f"{case.name}.db")
    casts = None
    if case.casts:
        casts = tmp_path / "casts.toml"
        casts.write_text(case.casts)
    before = sha256(db)
    args = ["migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url, "--json"]
    result = cli(*args, *(["--cast", str(casts)] if casts else []))
    assert "unexpected" not in result.stderr, result.stderr
    out = json.loads(result.stdout)
    failed = out["failed_objects"]
    if case.unsupported:
        assert result.exit_code in (0, 3), result.stderr
        for f in failed:
            assert any(u in f for u in case.unsupported), f
    else:
        assert result.exit_code == 0, (result.stderr, failed)
    assert sha256(db) == before
    return db, failed, casts


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus_database_migrates_and_answers_the_same(
    cli, case: Case, tmp_path: Path, pg_url: str
) -> None:
    db, _failed, casts = _migrate(cli, case, tmp_path, pg_url)
    verified = cli("migrate-db", "verify", "--from", f"sqlite:///{db}", "--to", pg_url, "--json")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    src = sqlite3.connect(db)
    plan = build_plan(open_source(db), load_casts(casts))
    with pg(pg_url) as conn:
        for lite_sql, pg_sql in case.queries:
            assert rows(src.execute(lite_sql).fetchall()) == rows(
                conn.execute(pg_sql).fetchall()
            ), lite_sql
        for v in plan.views:
            lite = src.execute(f'SELECT * FROM "{v.source}"').fetchall()
            cur = conn.execute(f'SELECT * FROM "{v.target}"')
            names = [d.name for d in cur.description or []]
            assert names == v.columns, v.source
            assert rows(lite) == rows(cur.fetchall()), (v.source, v.sql)


def test_mobile_full_text_table_stays_in_sync_through_its_triggers(
    cli, tmp_path: Path, pg_url: str
) -> None:
    case = next(c for c in CASES if c.name == "mobile")
    _migrate(cli, case, tmp_path, pg_url)
    with pg(pg_url) as conn:
        conn.execute(
            "INSERT INTO note (id, account_id, title, body) VALUES (99, 'a1', 'new', 'fresh text')"
        )
        conn.execute("UPDATE note SET body = 'edited' WHERE id = 1")
        conn.execute("DELETE FROM note WHERE id = 2")
        got = conn.execute("SELECT rowid, body FROM note_fts WHERE rowid IN (1, 2, 99)").fetchall()
    assert sorted(got) == [(1, "edited"), (99, "fresh text")]


def test_long_names_are_reachable(cli, tmp_path: Path, pg_url: str) -> None:
    case = next(c for c in CASES if c.name == "long_names")
    db, _failed, _casts = _migrate(cli, case, tmp_path, pg_url)
    plan = build_plan(open_source(db))
    renamed = {r["from"]: r["to"] for r in plan.renames}
    t23, t24 = renamed[f"{L63}_2023"], renamed[f"{L63}_2024"]
    assert len({t23, t24}) == 2 and all(len(t.encode()) <= 63 for t in (t23, t24))
    col = renamed[f"{L63}_value_before"]
    with pg(pg_url) as conn:
        got = conn.execute(
            f'SELECT count(*), min(b."{col}") FROM "{t23}" a JOIN "{t24}" b ON b.parent_id = a.id'
        ).fetchone()
    assert got == (10, "x1")
