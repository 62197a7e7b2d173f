"""Fan-out of "new messages in session X" to the WebSocket streams of this process.

An announcement is only a wake-up: each stream then reads the messages after its own cursor from
the database, so nothing is lost when announcements coalesce, arrive twice or arrive late.

- :class:`LocalHub` fans out inside one process: all SQLite needs (one process owns the file).
- :class:`PgHub` adds PostgreSQL LISTEN/NOTIFY so instances on one database hear each other.
  The NOTIFY is issued inside the transaction that inserts the messages (:func:`pg_notify`), so
  only committed messages are announced. After the listening connection is lost and regained,
  every stream is woken to catch up on what was posted meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from emrops import secrets
from emrops.db import azure_auth
from emrops.db.engine import DbUrl
from emrops.db.statements import Notify
from emrops.logs import get_logger

CHANNEL = "emrsim_messages"
HEALTH_CHECK_SECONDS = 5.0
RECONNECT_MAX_SECONDS = 5.0

log = get_logger(__name__)


class Subscription:
    """One stream's interest in a session: woken by announcements, told when to close."""

    def __init__(self, hub: LocalHub, session_id: uuid.UUID, loop: asyncio.AbstractEventLoop):
        self.hub = hub
        self.session_id = session_id
        self.loop = loop
        self._event = asyncio.Event()
        self.close_request: tuple[int, str] | None = None

    def wake(self) -> None:
        """Thread-safe: schedule the wake-up on the stream's event loop."""
        with contextlib.suppress(RuntimeError):  # loop already closed: nobody to wake
            self.loop.call_soon_threadsafe(self._event.set)

    def request_close(self, code: int, reason: str) -> None:
        self.close_request = (code, reason)
        self.wake()

    async def wait(self, timeout: float | None) -> bool:
        """Wait for a wake-up (True) or the timeout (False); clears the wake-up."""
        if not self._event.is_set():
            try:
                await asyncio.wait_for(self._event.wait(), timeout)
            except TimeoutError:
                return False
        self._event.clear()
        return True

    def close(self) -> None:
        self.hub.unsubscribe(self)


class LocalHub:
    """In-process fan-out keyed by session id."""

    # Called inside the write transaction (see emrops.db.queries.add_exchange); None: nothing to do.
    announce_in_tx: Callable[[Any, uuid.UUID, int], None] | None = None

    def __init__(self) -> None:
        self._subs: dict[uuid.UUID, set[Subscription]] = {}
        self._lock = threading.Lock()

    @property
    def live(self) -> bool:
        """False while announcements from other instances may be missed (streams then poll)."""
        return True

    async def start(self) -> None:
        return None

    async def stop(self, code: int = 1012, reason: str = "server stopping") -> None:
        """Ask every stream to close with ``code`` (1012: service restart, reconnect)."""
        for sub in self._all():
            sub.request_close(code, reason)

    def subscribe(self, session_id: uuid.UUID) -> Subscription:
        sub = Subscription(self, session_id, asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(session_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.session_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[sub.session_id]

    def announce(self, session_id: uuid.UUID) -> None:
        """Wake the streams of ``session_id`` in this process (thread-safe)."""
        with self._lock:
            subs = list(self._subs.get(session_id, ()))
        for sub in subs:
            sub.wake()

    def wake_all(self) -> None:
        for sub in self._all():
            sub.wake()

    def subscriber_count(self) -> int:
        with self._lock:
            return sum(len(subs) for subs in self._subs.values())

    def _all(self) -> list[Subscription]:
        with self._lock:
            return [sub for subs in self._subs.values() for sub in subs]


# Announce new messages of a session to every instance, inside the insert transaction, as
# :func:`emrops.db.queries.add_exchange` does with it (folded into its one statement on
# PostgreSQL). The payload is tiny (session and last id): listeners read the messages
# themselves, so the 8000-byte NOTIFY limit never meets a 4000-character message.
pg_notify = Notify(CHANNEL)


def _conninfo(url: DbUrl) -> tuple[str, dict[str, Any]]:
    return azure_auth.libpq(url.url)  # password or Entra token apart from the URI


class PgHub(LocalHub):
    """LocalHub plus a LISTEN connection on the PostgreSQL database."""

    announce_in_tx = staticmethod(pg_notify)

    def __init__(self, url: DbUrl):
        super().__init__()
        self.url = url
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._live = False

    @property
    def live(self) -> bool:
        return self._live

    async def start(self, wait: float = 5.0) -> None:
        """Start listening; waits up to ``wait`` seconds for LISTEN to be in place."""
        if self._task is not None and not self._task.done():
            return
        self._listening = asyncio.Event()
        self._task = asyncio.create_task(self._listen_forever(), name="emrsim-pg-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), wait)
        if not self._live:
            log.warning("LISTEN on %s not established yet; streams poll until it is", self._where)

    async def stop(self, code: int = 1012, reason: str = "server stopping") -> None:
        await super().stop(code, reason)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._live = False

    @property
    def _where(self) -> str:
        return secrets.mask(str(self.url))

    async def _listen_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._listen_once()
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                if self._live:
                    log.warning("lost LISTEN connection to %s: %s", self._where, exc)
                else:
                    log.debug("cannot LISTEN on %s: %s", self._where, exc)
            self._live = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _listen_once(self) -> None:
        conninfo, extra = _conninfo(self.url)
        conn = await psycopg.AsyncConnection.connect(
            conninfo, autocommit=True, connect_timeout=5, **extra
        )
        async with conn:
            await conn.execute(f"LISTEN {CHANNEL}")
            self._live = True
            self._listening.set()
            log.info("listening for new messages on %s", self._where)
            # Anything posted while we were not listening: let every stream re-read.
            self.wake_all()
            while True:
                async for notify in conn.notifies(timeout=HEALTH_CHECK_SECONDS):
                    self._dispatch(notify.payload)
                # No news for a while: prove the connection is still alive.
                await conn.execute("SELECT 1")

    def _dispatch(self, payload: str) -> None:
        session_hex, _, _last_id = payload.partition(":")
        try:
            session_id = uuid.UUID(hex=session_hex)
        except ValueError:
            log.debug("ignoring malformed notification %r", payload)
            return
        self.announce(session_id)


def make_hub(url: DbUrl) -> LocalHub:
    """The hub for a database: LISTEN/NOTIFY on PostgreSQL, in-process on SQLite."""
    return PgHub(url) if url.engine_name == "postgresql" else LocalHub()
