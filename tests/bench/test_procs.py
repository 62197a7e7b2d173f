"""Client processes: results merge to what was performed; the client_bound flag."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from emrops.bench.procs import run_cell_processes, split_clients
from emrops.bench.runner import run_cell
from emrops.bench.workloads import Dataset, load_dataset
from emrops.db.engine import create_engine, parse_db_url
from emrops.sim.seed import seed_database
from emrops.stats.saturation import cpu_share, saturated
from tests.sim.conftest import init_db


def _rows(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT (SELECT count(*) FROM messages) + (SELECT count(*) FROM vitals)"
            ).scalar_one()
        )


def test_split_clients_round_robin() -> None:
    assert split_clients(5, 2) == [(0, 2, 4), (1, 3)]
    assert split_clients(1, 4) == [(0,)]  # no process without a client
    assert split_clients(4, 4) == [(0,), (1,), (2,), (3,)]


def test_process_histograms_merge_to_the_operations_performed(tmp_path: Path) -> None:
    """Every write the clients of two processes made is one recorded latency, no more, no less
    (no warm-up, so nothing is discarded)."""
    url = init_db(f"sqlite:///{tmp_path / 'bench.db'}")
    engine = create_engine(url)
    try:
        seed_database(engine, sessions=10, messages_per_session=4)
        dataset = load_dataset(engine)
        before = _rows(engine)
        started = time.time()
        run = run_cell_processes(
            parse_db_url(url), dataset, "write", 4, 2, warmup_s=0.0, duration_s=1.0, seed=3
        )
        written = _rows(engine) - before
    finally:
        engine.dispose()
    assert run.processes == 2 and len(run.cpu_seconds) == 2
    # the measured window, in wall-clock time, spans the cell (what harness.py samples the
    # server's CPU over)
    assert started < run.window[0] < run.window[1] <= time.time()
    assert 0.9 <= run.window[1] - run.window[0] < 1.5
    assert run.errors == 0, run.error_samples
    assert run.count == written > 0
    assert set(run.ops) <= {"write.message", "write.vitals"}
    assert sum(op.histogram.count for op in run.ops.values()) == written


class _Spin:
    """A client whose only "operation" burns CPU: the client, not a database, is the limit."""

    def __init__(self, busy: bool) -> None:
        self.busy = busy

    def step(self) -> list[tuple[str, Any]]:
        def op() -> None:
            if self.busy:
                until = time.thread_time() + 0.002
                while time.thread_time() < until:
                    pass
            else:
                time.sleep(0.002)  # waiting, as for a database

        return [("spin", op)]


def _spin_run(busy: bool) -> Any:
    return run_cell(
        None,  # type: ignore[arg-type]
        Dataset(()),
        "read",
        1,
        warmup_s=0.1,
        duration_s=0.8,
        make_client=lambda _s: _Spin(busy),
    )


def _cpu_available(seconds: float = 0.4) -> float:
    """The share of one core a pure spin gets on this machine right now."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - wall0 < seconds:
        pass
    return (time.process_time() - cpu0) / (time.perf_counter() - wall0)


def test_client_bound_when_the_client_burns_its_cpu() -> None:
    """A client throttled by a busy loop is flagged; a waiting one is not.

    On a shared machine other work can take the core from the spinning client. When a plain
    spin gets most of a core, the flag must be set; when the machine is too busy for that, the
    runner must still measure the client as using what CPU it could get."""
    busy, available = None, 0.0
    for _ in range(3):
        available = _cpu_available()
        busy = _spin_run(True)
        if busy.client_bound:
            break
    assert busy is not None
    if available > 0.9:
        assert busy.cpu_share > 0.8 and busy.client_bound
    else:
        assert busy.cpu_share > 0.6 * available, (busy.cpu_share, available)
    idle = _spin_run(False)
    assert idle.cpu_share < 0.3 and not idle.client_bound


class _Holder:
    """A client that holds a connection for the cell, as workloads.Client does."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        self.log.append(f"open {threading.get_ident()}")
        yield
        self.log.append(f"close {threading.get_ident()}")

    def step(self) -> list[tuple[str, Any]]:
        return [("op", lambda: self.log.append(f"op {threading.get_ident()}"))]


def test_a_client_holds_its_connection_in_its_own_thread_for_the_cell() -> None:
    logs: list[list[str]] = []

    def make(_seed: int) -> _Holder:
        logs.append([])
        return _Holder(logs[-1])

    run = run_cell(None, Dataset(()), "read", 2, warmup_s=0.0, duration_s=0.2, make_client=make)  # type: ignore[arg-type]
    assert run.count > 0
    for log in logs:
        thread = log[0].split()[1]
        assert log[0] == f"open {thread}" and log[-1] == f"close {thread}"
        assert set(log[1:-1]) == {f"op {thread}"}  # every operation inside, in that thread


def test_cpu_share_counts_the_cores_the_processes_can_use() -> None:
    assert cpu_share(1.8, 1.0, 2, cores=2) == 0.9 and saturated(0.9)
    assert cpu_share(1.8, 1.0, 4, cores=2) == 0.9  # 4 processes on 2 cores: 2 cores of CPU
    assert cpu_share(1.8, 1.0, 4, cores=8) == 0.45 and not saturated(0.45)
    assert cpu_share(1.0, 0.0, 1) == 0.0
