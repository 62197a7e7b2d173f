"""Fan-out of "new messages in session X" to the WebSocket streams of this process.

An announcement is only a wake-up: each stream then reads the messages after its own cursor from
the database, so nothing is lost when announcements coalesce, arrive twice or arrive late.

- :class:`LocalHub` fans out inside one process: all SQLite needs (one process owns the file).
- :class:`PgHub` adds PostgreSQL LISTEN/NOTIFY so instances on one database hear each other.
  :meth:`LocalHub.published` is called once the messages are committed, so only committed
  messages are announced. PgHub sends the NOTIFYs from one sender task on its own connection,
  every announcement pending at that moment in ONE statement (``pg_notify`` over an array):
  PostgreSQL serialises the commits of transactions that NOTIFY behind one database-wide lock
  held across the commit's WAL flush, so a NOTIFY inside each chat exchange's own transaction
  capped every instance together at one commit per flush (measured: 16 writers, 3,200-3,700
  exchanges/s with the NOTIFY in the transaction, 5,400-6,100 without). Under load the sender
  coalesces whatever arrived during its previous send. After the listening connection is lost
  and regained, every stream is woken to catch up on what was posted meanwhile; announcements
  the sender could not send are kept (the newest id per session) and sent once it reconnects.
  What an instance had not sent yet when it was killed is lost: other instances' streams of
  those sessions see the messages at their session's next announcement or reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from typing import Any

import psycopg

from emrops import secrets
from emrops.db import azure_auth
from emrops.db.engine import DbUrl
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

    def published(self, session_id: uuid.UUID, last_id: int) -> None:
        """Messages up to ``last_id`` of ``session_id`` are committed: wake this process's
        streams of it (and, on PostgreSQL, tell the other instances). Call on the event loop."""
        self.announce(session_id)

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


def payload(session_id: uuid.UUID, last_id: int) -> str:
    """A notification's payload: tiny (session and last id), listeners read the messages
    themselves, so the 8000-byte NOTIFY limit never meets a 4000-character message."""
    return f"{session_id.hex}:{last_id}"


def pg_notify(cursor: Any, session_id: uuid.UUID, last_id: int) -> None:
    """NOTIFY the other instances on a DB-API (psycopg) cursor, in the caller's transaction."""
    cursor.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload(session_id, last_id)))


def _conninfo(url: DbUrl) -> tuple[str, dict[str, Any]]:
    return azure_auth.libpq(url.url)  # password or Entra token apart from the URI


class PgHub(LocalHub):
    """LocalHub plus a LISTEN connection on the PostgreSQL database."""

    def __init__(self, url: DbUrl):
        super().__init__()
        self.url = url
        self._task: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._live = False
        self._pending: dict[uuid.UUID, int] = {}  # announcements not sent yet: newest id
        self._send_wanted = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None

    def published(self, session_id: uuid.UUID, last_id: int) -> None:
        self.announce(session_id)
        if last_id > self._pending.get(session_id, -1):
            self._pending[session_id] = last_id
        self._send_wanted.set()
        if self._sender is None or self._sender.done():
            self._sender = asyncio.get_running_loop().create_task(
                self._send_forever(), name="emrsim-pg-notify"
            )

    def pending(self) -> int:
        """Announcements waiting to be sent to the other instances."""
        return len(self._pending)

    async def _send_forever(self) -> None:
        """Send what is pending, in one statement per round, on a connection of its own."""
        conn: psycopg.AsyncConnection[Any] | None = None
        delay = 0.2
        try:
            while True:
                await self._send_wanted.wait()
                self._send_wanted.clear()
                if not self._pending:
                    continue
                batch, self._pending = self._pending, {}
                payloads = [payload(sid, last) for sid, last in batch.items()]
                try:
                    if conn is None or conn.closed:
                        conninfo, extra = _conninfo(self.url)
                        conn = await psycopg.AsyncConnection.connect(
                            conninfo, autocommit=True, connect_timeout=5, **extra
                        )
                    await conn.execute(
                        "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p", (CHANNEL, payloads)
                    )
                    delay = 0.2
                except (psycopg.Error, OSError) as exc:
                    log.warning("cannot NOTIFY other instances on %s: %s", self._where, exc)
                    for sid, last in batch.items():  # keep them (newer ids may have come)
                        if last > self._pending.get(sid, -1):
                            self._pending[sid] = last
                    if conn is not None:
                        await conn.close()
                        conn = None
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_MAX_SECONDS)
                    self._send_wanted.set()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.close()

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
        sender, self._sender = self._sender, None
        if sender is not None:
            # what is pending goes out first (bounded: a stop never hangs on the database)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(), 2.0)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._live = False

    async def _drained(self) -> None:
        while self._pending or self._send_wanted.is_set():
            await asyncio.sleep(0.01)

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
