"""Pure parts of the benchmark: durability levels and warnings, BUSY classification."""

from __future__ import annotations

import sqlite3
import time

import pytest
import sqlalchemy as sa

from emrops.bench import durability
from emrops.bench.report import crossover
from emrops.bench.runner import is_busy, run_cell
from emrops.db.engine import translate


@pytest.mark.parametrize(
    ("journal", "sync", "level"),
    [
        ("wal", "NORMAL", "recent"),
        ("wal", "FULL", "full"),
        ("wal", "EXTRA", "full"),
        ("delete", "NORMAL", "full"),
        ("wal", "OFF", "none"),
        ("memory", "FULL", "none"),
    ],
)
def test_sqlite_levels(journal: str, sync: str, level: str) -> None:
    assert durability.sqlite_level(journal, sync) == level


@pytest.mark.parametrize(
    ("fsync", "commit", "level"),
    [("on", "on", "full"), ("on", "local", "full"), ("on", "off", "recent"), ("off", "on", "none")],
)
def test_postgres_levels(fsync: str, commit: str, level: str) -> None:
    assert durability.postgres_level(fsync, commit) == level


def _engine(kind: str, level: str, fs: str = "ext4") -> dict:
    settings = (
        {"journal_mode": "wal", "synchronous": "NORMAL", "filesystem": fs}
        if kind == "sqlite"
        else {"fsync": "on", "synchronous_commit": "on", "filesystem": fs}
    )
    return {"engine": kind, "durability": level, "settings": settings}


def test_warnings() -> None:
    assert durability.warnings_for([_engine("sqlite", "full"), _engine("postgresql", "full")]) == []
    differ = durability.warnings_for([_engine("sqlite", "recent"), _engine("postgresql", "full")])
    assert len(differ) == 1 and differ[0].startswith(
        "durability differs in strength: sqlite recent (journal_mode=wal, synchronous=NORMAL), "
        "postgresql full (fsync=on, synchronous_commit=on)"
    )
    none = durability.warnings_for([_engine("postgresql", "none")])
    assert none and "without crash safety" in none[0]
    fs = durability.warnings_for(
        [_engine("sqlite", "full", "tmpfs"), _engine("postgresql", "full")]
    )
    assert any("different file systems" in w for w in fs)
    assert any("tmpfs" in w and "never reach a disk" in w for w in fs)


def test_filesystem_type_of_root_is_known(tmp_path) -> None:
    assert durability.filesystem_type(tmp_path)  # some type, from /proc/mounts


def test_busy_classification() -> None:
    locked = sqlite3.OperationalError("database is locked")
    assert is_busy(locked)
    wrapped = translate(sa.exc.OperationalError("INSERT", {}, locked), "sqlite:///x.db")
    wrapped.__cause__ = locked
    assert is_busy(wrapped)
    assert is_busy(RuntimeError("could not serialize access due to concurrent update"))
    assert not is_busy(sqlite3.IntegrityError("CHECK constraint failed: spo2_range"))


class _Flaky:
    """Every third operation fails with BUSY, every fifth with another error."""

    def __init__(self, seed: int) -> None:
        self.n = 0

    def step(self):
        self.n += 1
        n = self.n

        def op() -> None:
            time.sleep(0.001)
            if n % 3 == 0:
                raise sqlite3.OperationalError("database is locked")
            if n % 5 == 0:
                raise ValueError("boom")

        return [("fake.op", op)]


def test_runner_counts_errors_and_busy_and_discards_warmup() -> None:
    run = run_cell(
        None,
        None,
        "chat",
        2,
        warmup_s=0.2,
        duration_s=0.5,
        make_client=_Flaky,  # type: ignore[arg-type]
    )
    stats = run.ops["fake.op"]
    assert stats.count > 50 and stats.errors > 10 and 0 < stats.busy < stats.errors
    # ~1 ms per op, 2 clients, 0.5 s measured: the 0.2 s warm-up is not in the count
    total = stats.count + stats.errors
    assert total < 2 * 0.5 / 0.001 * 1.05
    assert 1000 <= stats.histogram.percentile_us(50) < 50_000
    assert run.error_samples and len(run.error_samples) <= 5
    assert run.ops_per_s == pytest.approx(stats.count / 0.5)


def test_runner_needs_a_client() -> None:
    with pytest.raises(ValueError):
        run_cell(None, None, "chat", 0, warmup_s=0, duration_s=0.1)  # type: ignore[arg-type]


def _xdoc(lite: list[tuple[float, float, float]], pg: list[tuple[float, float, float]]) -> dict:
    cells = []
    for label, rows in (("sqlite", lite), ("postgresql", pg)):
        for n, (lo, med, hi) in zip((1, 4), rows, strict=True):
            cells.append(
                {
                    "engine": label,
                    "clients": n,
                    "summary": {"ops_per_s": {"min": lo, "median": med, "max": hi}},
                }
            )
    engines = [
        {"label": "sqlite", "engine": "sqlite"},
        {"label": "postgresql", "engine": "postgresql"},
    ]
    return {"engines": engines, "cells": cells}


def test_crossover_statement() -> None:
    clear = crossover(_xdoc([(90, 100, 110), (90, 100, 110)], [(40, 50, 60), (150, 160, 170)]))
    assert clear is not None and clear.startswith("PostgreSQL clearly overtakes SQLite at 4 ")
    assert "1: 0.50x, 4: 1.60x" in clear
    vague = crossover(_xdoc([(90, 100, 110), (50, 100, 150)], [(40, 50, 60), (100, 120, 140)]))
    assert vague is not None and "within the run-to-run spread" in vague
    never = crossover(_xdoc([(90, 100, 110)] * 2, [(40, 50, 60)] * 2))
    assert never is not None and never.startswith("PostgreSQL does not overtake")
    assert crossover({"engines": [{"label": "sqlite", "engine": "sqlite"}], "cells": []}) is None
