"""PgHub: announcements reach the other instances after the commit, coalesced, and survive a
lost sender connection (emrops.sim.events)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg

from emrops.db.engine import parse_db_url
from emrops.sim.events import CHANNEL, PgHub


def _dsn(pg_db: str) -> str:
    return pg_db.replace("postgresql+psycopg://", "postgresql://")


async def _two_hubs(pg_db: str) -> tuple[PgHub, PgHub]:
    a, b = PgHub(parse_db_url(pg_db)), PgHub(parse_db_url(pg_db))
    await a.start()
    await b.start()
    assert a.live and b.live
    return a, b


def test_published_wakes_streams_of_another_instance(pg_db: str) -> None:
    async def scenario() -> None:
        a, b = await _two_hubs(pg_db)
        try:
            sid, other = uuid.uuid4(), uuid.uuid4()
            sub_b = b.subscribe(sid)
            sub_other = b.subscribe(other)
            sub_a = a.subscribe(sid)
            a.published(sid, 7)
            assert await sub_a.wait(1)  # this instance's stream at once
            assert await sub_b.wait(5)  # the other instance's through NOTIFY
            assert not await sub_other.wait(0.3)  # only that session's
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())


def test_a_burst_is_coalesced_and_every_session_is_announced_with_its_newest_id(
    pg_db: str,
) -> None:
    sessions = [uuid.uuid4() for _ in range(40)]

    async def scenario() -> None:
        hub = PgHub(parse_db_url(pg_db))
        try:
            for round_ in range(5):
                for sid in sessions:
                    hub.published(sid, round_)
                await asyncio.sleep(0)  # the sender may take what is there so far
        finally:
            await hub.stop()  # sends what is pending first
        assert hub.pending() == 0

    with psycopg.connect(_dsn(pg_db), autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        asyncio.run(scenario())
        got = [n.payload for n in listener.notifies(timeout=2)]
    newest: dict[str, int] = {}
    for text in got:
        hex_id, _, last = text.partition(":")
        newest[hex_id] = max(newest.get(hex_id, -1), int(last))
    assert newest == {sid.hex: 4 for sid in sessions}  # none lost, the last id of each
    assert len(got) < 5 * len(sessions)  # coalesced: fewer notifications than publications


def test_announcements_survive_a_lost_sender_connection(pg_db: str) -> None:
    sid = uuid.uuid4()

    async def scenario() -> None:
        a, b = await _two_hubs(pg_db)
        try:
            sub_b = b.subscribe(sid)
            a.published(sid, 1)
            assert await sub_b.wait(5)
            # PostgreSQL drops the sender's connection (restart, pg_terminate_backend)
            with psycopg.connect(_dsn(pg_db), autocommit=True) as admin:
                killed = admin.execute(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND query LIKE %s",
                    ("%pg_notify%",),
                ).fetchone()
            assert killed is not None and killed[0] == 1
            a.published(sid, 2)
            assert await sub_b.wait(10)  # sent again once the sender reconnected
            assert a.pending() == 0
        finally:
            await a.stop()
            await b.stop()

    asyncio.run(scenario())
