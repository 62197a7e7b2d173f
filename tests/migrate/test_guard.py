"""An offline run reads the source in place: a write to it during the run fails the run and
leaves nothing behind; --resume refuses a source that changed since the run started."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from emrops.migrate.guard import SourceChanged
from emrops.migrate.run import Hooks, RunOptions, run_migration
from tests.migrate.conftest import pg, sha256


def _source(path: Path, wal: bool) -> Path:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    conn.executemany("INSERT INTO notes (body) VALUES (?)", [(f"note {i}",) for i in range(500)])
    conn.commit()
    conn.close()
    return path


def _write(path: Path) -> None:
    """Another program (the app) commits to the source."""
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO notes (body) VALUES ('written during the run')")
    conn.commit()
    conn.close()


def _options(src: Path, pg_url: str, tmp_path: Path, **kw: object) -> RunOptions:
    return RunOptions(
        source=f"sqlite:///{src}",
        target=pg_url,
        state_dir=tmp_path / "state",
        backup_store=str(tmp_path / "backups"),
        **kw,  # type: ignore[arg-type]
    )


def _nothing_in(pg_url: str) -> None:
    with pg(pg_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert left == 0


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "rollback-journal"])
def test_a_write_during_an_offline_run_fails_it(tmp_path: Path, pg_url: str, wal: bool) -> None:
    src = _source(tmp_path / "app.db", wal)

    def phase(name: str) -> None:
        if name == "copying":
            _write(src)

    with pytest.raises(SourceChanged) as caught:
        run_migration(_options(src, pg_url, tmp_path), Hooks(phase=phase))
    assert "was written to while it was being migrated" in str(caught.value)
    assert "--online" in (caught.value.hint or "")
    _nothing_in(pg_url)  # no tables, no journal
    conn = sqlite3.connect(src)  # the app's write is there; nothing of emrops is
    assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 501
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    conn.close()
    assert names == ["notes"]


def test_an_untouched_source_is_read_in_place_and_kept(tmp_path: Path, pg_url: str) -> None:
    src = _source(tmp_path / "app.db", wal=True)
    before = sha256(src)
    result = run_migration(_options(src, pg_url, tmp_path))
    assert result.ok and result.rows == 500 and result.snapshot is None
    assert result.backup_id  # the pinned backup is a `backup run` of the source itself
    assert sha256(src) == before
    assert not list((tmp_path / "state").rglob("*.db"))  # no second copy of the source


def test_resume_refuses_a_source_changed_since_the_run_started(tmp_path: Path, pg_url: str) -> None:
    src = _source(tmp_path / "app.db", wal=False)

    def crash(name: str) -> None:
        if name.startswith("building"):
            raise KeyboardInterrupt  # stands in for a crash after the copy

    with pytest.raises(KeyboardInterrupt):
        run_migration(_options(src, pg_url, tmp_path), Hooks(phase=crash))
    _write(src)
    with pytest.raises(SourceChanged, match="changed since the interrupted run started"):
        run_migration(_options(src, pg_url, tmp_path, resume=True))
    with pg(pg_url) as conn:  # the refused resume changed nothing: rollback still applies
        assert conn.execute("SELECT count(*) FROM notes").fetchone()[0] == 500


def test_range_split_checksum_equals_the_single_query(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a server without parallel workers the target checksum of a big table is computed
    over key ranges on several connections; it must equal the one-query checksum."""
    from emrops.migrate import journal, verify
    from emrops.migrate.status import load_plan

    src = _source(tmp_path / "app.db", wal=True)
    assert run_migration(_options(src, pg_url, tmp_path)).ok
    plan, _entries = load_plan(pg_url)
    tp = plan.tables[0]
    with journal.connect(pg_url) as conn:
        whole = verify.target_checksum(conn, tp)
    dbname = pg_url.rsplit("/", 1)[1]
    with pg(pg_url) as conn:
        conn.execute(f'ALTER DATABASE "{dbname}" SET max_parallel_workers_per_gather = 0')
    monkeypatch.setattr(verify, "SPLIT_ROWS", 100)
    calls: list[str] = []
    original = verify.target_checksum

    def spy(conn, tp, where="", params=()):  # type: ignore[no-untyped-def]
        calls.append(where)
        return original(conn, tp, where, params)

    monkeypatch.setattr(verify, "target_checksum", spy)
    assert verify.target_checksum_split(pg_url, tp, 3) == whole == (500, whole[1])
    assert len([w for w in calls if "WHERE" in w]) == 3  # it did split
