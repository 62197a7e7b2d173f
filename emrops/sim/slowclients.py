"""Deadlines for clients that hold a connection without finishing a request (slowloris).

uvicorn times out only the idle gap *after* a response (keep-alive, 5 s). A connection that
was opened and never sent a byte, a request head that never ends, a body shorter than its
``Content-Length``, a chunked body without its last chunk, or a body dribbled at one byte a
second were each held for ever, by anyone, before authentication: enough of them use up the
server's file descriptors and every new client is turned away.

One sweeper per server (every SWEEP_S) applies this table to each HTTP connection that is
waiting for the client:

| phase | started when | refused when | answer |
| --- | --- | --- | --- |
| ``idle`` | the connection opened | nothing arrived within ``timeout`` | close, no answer |
| ``head`` | the first byte of a request head | the head is not complete within ``timeout`` | 408 |
| ``body`` | the head was complete | more than ``timeout`` + bytes / MIN_BODY_RATE seconds | 408 |
| answer unread | the send buffer last shrank by MIN_BODY_RATE a second | ``timeout`` | abort |

The last row is the slow *reader*: a client that asks for a big page (a 500-message history
is about 2 MB) and never reads it held that buffer for ever, even after uvicorn's keep-alive
close (a close waits for the buffer to drain): 100 such connections held 400 MB. Each tick
the sweeper compares the buffer with the last one; no progress for ``timeout`` aborts the
connection and frees it.

A body is never timed while the server itself stopped reading it (flow control), and the 408
is only written when no response has started on the connection (else it is just closed). The
protocol records only the phase and its start time (two clock reads per request), so the
normal path stays as fast as before.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterable
from typing import Any, Protocol

from emrops.logs import get_logger

log = get_logger(__name__)

DEFAULT_TIMEOUT_S = 10.0  # Apache's mod_reqtimeout allows 20 s for a head; nginx 60 s per read
MIN_BODY_RATE = 1024  # bytes a second a body must keep up after its first `timeout` seconds
SWEEP_S = 1.0
FD_WARN_SHARE = 0.9  # warn when connections reach this share of the open-file limit
FD_WARN_EVERY_S = 60.0

IDLE, HEAD, BODY = "idle", "head", "body"

TIMEOUT_BODY = (
    b'{"error": {"code": "request_timeout", "message": "the request was not received in time"}}'
)
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: application/json\r\n"
    b"content-length: " + str(len(TIMEOUT_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + TIMEOUT_BODY
)


class Waiting(Protocol):
    """What the sweeper needs from a connection (BoundedHeadProtocol)."""

    phase: str | None
    since: float
    body_bytes: int

    def reading_paused(self) -> bool: ...
    def response_started(self) -> bool: ...
    def refuse(self, answer: bytes | None) -> None: ...
    def write_stalled(self, now: float, timeout: float) -> bool: ...
    def abort(self) -> None: ...


class SendBuffer:
    """Progress of one connection's send buffer between sweeps (the slow-reader row)."""

    __slots__ = ("since", "size")

    def __init__(self) -> None:
        self.since: float | None = None  # when it last made progress while not empty
        self.size = 0

    def stalled(self, size: int, now: float, timeout: float) -> bool:
        """True when the buffer (``size`` bytes now) has not shrunk by MIN_BODY_RATE a second
        for ``timeout`` seconds. A buffer that grew is new data, which counts as progress: the
        server only writes more once the client read (flow control)."""
        if size == 0:
            self.since = None
            return False
        if self.since is None or size > self.size or size <= self.size - MIN_BODY_RATE * SWEEP_S:
            self.since, self.size = now, size
            return False
        return now - self.since > timeout


def overdue(phase: str | None, since: float, body_bytes: int, now: float, timeout: float) -> bool:
    """True when a connection in ``phase`` since ``since`` has waited too long (the table)."""
    if phase is None:
        return False
    allowed = timeout + body_bytes / MIN_BODY_RATE if phase == BODY else timeout
    return now - since > allowed


def sweep(connections: Iterable[Any], now: float, timeout: float) -> int:
    """Refuse every overdue connection; returns how many were refused."""
    refused = 0
    for conn in list(connections):
        if not hasattr(conn, "write_stalled"):
            continue  # not ours: a WebSocket (it has its own keep-alive pings)
        if conn.write_stalled(now, timeout):
            conn.abort()
            refused += 1
            continue
        phase = conn.phase
        if phase is None or not overdue(phase, conn.since, conn.body_bytes, now, timeout):
            continue
        if phase == BODY and conn.reading_paused():
            continue
        if phase == IDLE or conn.response_started():
            conn.refuse(None)
        else:
            conn.refuse(TIMEOUT_RESPONSE)
        refused += 1
    return refused


def open_file_limit() -> int:
    """The soft RLIMIT_NOFILE of this process."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard one (as Go and nginx's worker_rlimit_nofile
    do): each client holds a descriptor, and a soft limit of 1024 turned the 1000th client
    away while the hard limit allowed far more. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


class Sweeper:
    """One per server: runs :func:`sweep` every SWEEP_S while it has connections."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any], timeout: float):
        self.loop = loop
        self.connections = connections
        self.timeout = timeout
        self.handle: asyncio.TimerHandle | None = None
        self.fd_limit = open_file_limit()
        self.warned_at = -FD_WARN_EVERY_S

    def ensure_running(self) -> None:
        if self.handle is None:
            self.handle = self.loop.call_later(SWEEP_S, self._tick)

    def _tick(self) -> None:
        self.handle = None
        refused = sweep(self.connections, self.loop.time(), self.timeout)
        if refused:
            log.debug(
                "closed %d connection(s) too slow to send a request or read an answer", refused
            )
        self._warn_near_fd_limit()
        if self.connections:
            self.ensure_running()

    def _warn_near_fd_limit(self) -> None:
        open_now = len(self.connections)
        if open_now < FD_WARN_SHARE * self.fd_limit:
            return
        now = time.monotonic()
        if now - self.warned_at < FD_WARN_EVERY_S:
            return
        self.warned_at = now
        log.warning(
            "%d client connections open, near this process's open-file limit (%d): new "
            "connections will be refused; raise the limit (ulimit -n, LimitNOFILE=) or add "
            "workers / instances",
            open_now,
            self.fd_limit,
        )


def sweeper_for(server_state: Any, loop: asyncio.AbstractEventLoop, timeout: float) -> Sweeper:
    """The server's sweeper (kept on uvicorn's shared ServerState), made on first use."""
    found: Sweeper | None = getattr(server_state, "emrops_sweeper", None)
    if found is None or found.loop is not loop:
        found = Sweeper(loop, server_state.connections, timeout)
        server_state.emrops_sweeper = found
    return found
