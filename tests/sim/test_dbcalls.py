"""Where the sim server runs its database calls (emrops.sim.dbcalls), the scenario list cache
(emrops.sim.cached) and SQLite writers queueing in the server instead of in the busy handler."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from emrops.db import queries
from emrops.db.engine import create_engine
from emrops.sim.app import create_app
from emrops.sim.dbcalls import DbCalls
from tests.sim.conftest import Server


class Overlap:
    """A call that records how many of its kind ran at once and on which threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.threads: set[int] = set()

    def __call__(self, value: int, *, pause: float = 0.01) -> int:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.get_ident())
        time.sleep(pause)
        with self.lock:
            self.running -= 1
        return value * 2


async def _many(calls: DbCalls, kind: str, fn: Overlap, count: int) -> list[int]:
    run = calls.write if kind == "write" else calls.read
    return list(await asyncio.gather(*(run(fn, i, pause=0.01) for i in range(count))))


def test_sqlite_writes_run_one_at_a_time_and_reads_inline(sqlite_db: str) -> None:
    engine = create_engine(sqlite_db)
    calls = DbCalls(engine, threads=30)
    try:
        writes = Overlap()
        assert asyncio.run(_many(calls, "write", writes, 20)) == [2 * i for i in range(20)]
        assert writes.most == 1
        assert threading.get_ident() not in writes.threads  # off the event loop's thread

        reads = Overlap()

        async def read_on_loop() -> tuple[list[int], int]:
            return await _many(calls, "read", reads, 3), threading.get_ident()

        results, loop_thread = asyncio.run(read_on_loop())
        assert results == [0, 2, 4]
        assert reads.threads == {loop_thread}
    finally:
        calls.close()
        engine.dispose()


def test_postgresql_calls_run_on_threads_in_parallel(pg_db: str) -> None:
    engine = create_engine(pg_db)
    calls = DbCalls(engine, threads=8)
    try:
        for kind in ("read", "write"):
            fn = Overlap()
            assert asyncio.run(_many(calls, kind, fn, 16)) == [2 * i for i in range(16)]
            assert fn.most > 1, kind  # a slow round trip does not hold up the others
            assert threading.get_ident() not in fn.threads
    finally:
        calls.close()
        engine.dispose()


def test_a_closed_dbcalls_lets_its_threads_go_and_still_works(sqlite_db: str) -> None:
    """Like a disposed engine: close() releases the threads; a later call starts afresh (an
    app used again after its lifespan, as the schemathesis test does)."""
    engine = create_engine(sqlite_db)
    calls = DbCalls(engine, threads=1)

    first = Overlap()

    def alive() -> bool:
        return any(t.ident in first.threads for t in threading.enumerate())

    try:
        assert asyncio.run(calls.write(first, 1)) == 2
        assert alive()
        calls.close()
        deadline = time.monotonic() + 5
        while alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not alive()
        again = Overlap()
        assert asyncio.run(calls.write(again, 2)) == 4  # (thread idents may be reused)
        assert len(again.threads) == 1
    finally:
        calls.close()
        engine.dispose()


def test_scenario_list_is_cached_for_the_profile_ttl(sqlite_db: str) -> None:
    with TestClient(create_app(sqlite_db)) as client:
        cache = client.app.state.sim.runtime.scenarios  # type: ignore[attr-defined]
        assert cache.ttl_s == queries.PROFILE_TTL_S  # one staleness bound for list and replies
        now = [1000.0]
        cache.clock = lambda: now[0]
        first = client.get("/api/scenarios").json()["items"][0]
        engine = create_engine(sqlite_db)
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE scenarios SET title = 'Edited by hand' WHERE id = :id"),
                {"id": first["id"]},
            )
        engine.dispose()
        now[0] += queries.PROFILE_TTL_S - 0.5
        assert client.get("/api/scenarios").json()["items"][0]["title"] == first["title"]
        now[0] += 1.0
        assert client.get("/api/scenarios").json()["items"][0]["title"] == "Edited by hand"


def _session(server: Server) -> str:
    with server.http() as http:
        scenario = http.get("/api/scenarios").json()["items"][0]["id"]
        return str(http.post("/api/sessions", json={"scenario_id": scenario}).json()["id"])


def test_concurrent_writers_all_commit_in_order(sqlite_db: str, start_server: Any) -> None:
    server = start_server("--db", sqlite_db)
    sessions = [_session(server) for _ in range(4)]

    def post(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            reply = http.post(
                f"/api/sessions/{sessions[i % 4]}/messages", json={"content": f"question {i}"}
            )
            return reply.status_code

    with ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(post, range(96)))
    assert codes == [201] * 96
    engine = create_engine(sqlite_db)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*), count(DISTINCT id) FROM messages")).one()
    engine.dispose()
    assert tuple(count) == (192, 192)


def test_a_write_waiting_for_another_process_does_not_stall_the_server(
    sqlite_db: str, start_server: Any
) -> None:
    """Another process holds the SQLite write lock: the server's write waits (busy timeout,
    on its writer thread) while reads and /health keep answering, then it commits."""
    server = start_server("--db", sqlite_db)
    session = _session(server)
    holder = sqlite3.connect(Path(sqlite_db.removeprefix("sqlite:///")), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{server.url}/api/sessions/{session}/messages",
                json={"content": "are you there?"},
                timeout=30,
            )
            time.sleep(0.3)
            assert not pending.done()  # waiting for the lock
            with server.http() as http:
                started = time.monotonic()
                assert http.get("/health").status_code == 200
                page = http.get(f"/api/sessions/{session}/messages")
                assert page.status_code == 200 and page.json()["items"] == []
                assert time.monotonic() - started < 0.5
            holder.execute("COMMIT")
            reply = pending.result(timeout=30)
        assert reply.status_code == 201
        assert reply.json()["student"]["content"] == "are you there?"
    finally:
        holder.close()


def test_postgresql_connections_are_kept_across_bursts(pg_db: str) -> None:
    """Bursts of concurrent calls above the old steady pool size (10) reuse the server's
    connections: after the first burst no new backend is started. With pool_size 10 and 20
    overflow, every burst opened overflow connections and closed them again on return, a
    backend fork and an authentication each time."""
    from emrops.sim.runtime import open_runtime

    runtime = open_runtime(pg_db)
    dbname = pg_db.rsplit("/", 1)[1]

    def hold(_i: int) -> int:  # what a slow request does: one connection held for a while
        with runtime.engine.connect() as conn:
            return int(
                conn.execute(sa.text("SELECT pg_backend_pid() FROM pg_sleep(0.3)")).scalar_one()
            )

    try:
        seen = []
        with ThreadPoolExecutor(runtime.threads) as pool:
            for _burst in range(3):
                seen.append(set(pool.map(hold, range(20))))
        with runtime.engine.connect() as conn:
            alive = set(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = :db "
                        "AND backend_type = 'client backend'"
                    ),
                    {"db": dbname},
                ).scalars()
            )
        assert len(seen[0]) == 20  # 20 calls at once: 20 connections
        assert seen[1] <= seen[0] and seen[2] <= seen[0]  # no backend started after the first
        assert seen[0] <= alive  # and none of them was closed
    finally:
        runtime.close()
