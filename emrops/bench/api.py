"""``benchmark run``: seed scratch databases, run every (repeat, clients, engine) cell, build the
result document. The CLI only parses options into :class:`BenchOptions` and renders the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from emrops import __version__
from emrops.bench import durability, result
from emrops.bench.procs import run_cell_processes
from emrops.bench.runner import CellRun
from emrops.bench.scratch import Scratch, open_engine
from emrops.bench.workloads import WORKLOADS, load_dataset
from emrops.db.connroom import ROOM_SQL, room_of
from emrops.db.engine import db_errors, parse_db_url
from emrops.errors import UsageError
from emrops.stats.saturation import usable_cores
from emrops.units import format_duration

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    """Everything ``benchmark run`` takes (already parsed: seconds, counts)."""

    dbs: Sequence[str]
    workload: str
    clients: Sequence[int] = (1, 4, 16, 64)
    duration_s: float = 20.0
    warmup_s: float = 5.0
    repeat: int = 3
    sessions: int = 2000
    messages_per_session: int = 50
    seed: int = 1
    sqlite_synchronous: str | None = None  # None: the data layer's default (NORMAL)
    processes: int | None = None  # client processes; None: one per usable core

    @property
    def client_processes(self) -> int:
        return self.processes if self.processes is not None else usable_cores()

    def validate(self) -> None:
        """UsageError for anything a run cannot start with."""
        if not self.dbs:
            raise UsageError(
                "no database given", hint="add --db sqlite:///bench.db and/or --db URL"
            )
        if self.workload not in WORKLOADS:
            raise UsageError(
                f"unknown workload {self.workload!r}", hint=f"use one of: {', '.join(WORKLOADS)}"
            )
        if not self.clients or any(c < 1 for c in self.clients):
            raise UsageError(
                f"invalid --clients {','.join(map(str, self.clients))}: "
                "every client count must be at least 1",
                hint="e.g. --clients 1,4,16,64",
            )
        if self.duration_s <= 0:
            raise UsageError("--duration must be above zero", hint="e.g. --duration 20s")
        if self.warmup_s < 0:
            raise UsageError("--warmup cannot be negative", hint="e.g. --warmup 5s")
        if self.repeat < 1:
            raise UsageError("--repeat must be at least 1", hint="e.g. --repeat 3")
        if self.sessions < 1 or self.messages_per_session < 1:
            raise UsageError("--sessions and --messages-per-session must be at least 1")
        if self.processes is not None and self.processes < 1:
            raise UsageError(
                f"invalid --processes {self.processes}: at least 1", hint="a number or auto"
            )
        if self.sqlite_synchronous not in (None, "normal", "full"):
            raise UsageError(
                f"invalid --sqlite-synchronous {self.sqlite_synchronous!r}", hint="normal or full"
            )
        for db in self.dbs:
            parse_db_url(db)


def _labels(scratches: list[Scratch]) -> list[str]:
    labels: list[str] = []
    for s in scratches:
        base, n = s.engine_name, 1
        label = base
        while label in labels:
            n += 1
            label = f"{base}-{n}"
        labels.append(label)
    return labels


def run_benchmark(opts: BenchOptions, progress: Progress | None = None) -> dict[str, Any]:
    """Run the benchmark and return the result document (schema in :mod:`emrops.bench.result`).

    Raises UsageError (bad options), DatabaseError (a database cannot be reached or used),
    Interrupted (Ctrl-C). Scratch databases are removed in every case.
    """
    opts.validate()
    say = progress or (lambda _msg: None)
    clients = sorted(set(opts.clients))
    processes = opts.client_processes
    machine = durability.machine()  # load average before we add ours: others' load skews results
    scratches = [Scratch(parse_db_url(db)) for db in opts.dbs]
    labels = _labels(scratches)
    try:
        for s in scratches:
            s.check()
        engines = []
        datasets = {}
        for label, s in zip(labels, scratches, strict=True):
            say(
                f"{label}: seeding {opts.sessions} sessions x {opts.messages_per_session} "
                "messages into a scratch database"
            )
            seeded = s.seed(opts.sessions, opts.messages_per_session, opts.seed)
            engine = open_engine(s.fresh_run(), 1, opts.sqlite_synchronous)
            try:
                info = durability.capture(engine)
                datasets[label] = load_dataset(engine)
                _check_pg_capacity(label, engine, max(clients))
            finally:
                engine.dispose()
            engines.append(
                {
                    "label": label,
                    "db": s.target.masked(),
                    **info,
                    "seed": {
                        "sessions": seeded.sessions,
                        "messages": seeded.messages,
                        "vitals": seeded.vitals,
                        "seconds": round(seeded.seconds, 2),
                    },
                }
            )
        runs: dict[tuple[str, int], list[CellRun]] = {}
        total = opts.repeat * len(clients) * len(labels)
        per_cell = opts.warmup_s + opts.duration_s
        cell = 0
        # repeats outermost and engines innermost: slow drift of the machine hits all alike
        for rep in range(1, opts.repeat + 1):
            for n in clients:
                for label, s in zip(labels, scratches, strict=True):
                    cell += 1
                    eta = (total - cell + 1) * per_cell
                    say(
                        f"cell {cell}/{total}: repeat {rep}/{opts.repeat}, {label}, "
                        f"{n} client(s); ETA {format_duration(eta)}"
                    )
                    run = run_cell_processes(
                        s.fresh_run(),
                        datasets[label],
                        opts.workload,
                        n,
                        processes,
                        warmup_s=opts.warmup_s,
                        duration_s=opts.duration_s,
                        seed=opts.seed * 1000 + rep,
                        sqlite_synchronous=opts.sqlite_synchronous,
                    )
                    runs.setdefault((label, n), []).append(run)
    finally:
        for s in scratches:
            s.cleanup()
    return {
        "schema": result.SCHEMA_ID,
        "schema_version": result.SCHEMA_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "emrops_version": __version__,
        "machine": {**machine, "loadavg_end": durability.machine()["loadavg"]},
        "config": {
            "workload": opts.workload,
            "clients": clients,
            "duration_s": opts.duration_s,
            "warmup_s": opts.warmup_s,
            "repeat": opts.repeat,
            "sessions": opts.sessions,
            "messages_per_session": opts.messages_per_session,
            "seed": opts.seed,
            "sqlite_synchronous": opts.sqlite_synchronous or "default",
            "mode": "closed-loop",
            "processes": processes,
            "cores": usable_cores(),
            "client_model": f"clients spread over up to {processes} process(es) (round robin), "
            "threads with one pooled connection each",
        },
        "engines": engines,
        "warnings": durability.warnings_for(engines),
        "cells": [result.cell_doc(label, n, runs[(label, n)]) for label in labels for n in clients],
    }


def _check_pg_capacity(label: str, engine: Engine, clients: int) -> None:
    """Refuse before the first cell when the server has no room for a connection per client
    (the limits of max_connections, the role and the database, less what is open now): the
    cell with the most clients would otherwise fail half-way through the benchmark."""
    if engine.dialect.name != "postgresql":
        return
    with db_errors(engine.url), engine.connect() as conn:
        room = room_of(conn.exec_driver_sql(ROOM_SQL).fetchone())
    # the clients' connections, plus the one the run keeps to create each cell's copy
    if room is not None and clients + 1 > room.free:
        raise UsageError(
            f"{label}: {clients} clients need {clients + 1} connections, but PostgreSQL has "
            f"room for {room.free} from this role ({room.limit})",
            hint=f"use at most {max(room.free - 1, 0)} clients (--clients), close idle "
            "connections, or raise the limit (max_connections, CONNECTION LIMIT)",
        )
