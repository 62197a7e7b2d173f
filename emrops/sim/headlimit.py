"""A bound on the request head (request line + headers) the server buffers per connection.

uvicorn's httptools protocol has no such bound: llhttp hands each header to Python only once it
is complete, so an unauthenticated client trickling one endless header line made the server
buffer it all (3 connections x 50 MB raised RSS by 150 MB) before any middleware could run.
This protocol answers 431 and closes once a head is larger than MAX_HEAD bytes. (uvicorn's h11
protocol bounds the head itself, at 16 KiB.)

It also records which phase of a request it waits for (nothing yet, the head, the body) and
since when, so :mod:`emrops.sim.slowclients` can close connections that take too long.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from emrops.sim import slowclients

# nginx's default large_client_header_buffers is 4 x 8 KiB; a little more leaves room for
# long cookies and bearer tokens.
MAX_HEAD = 64 * 1024

_BODY = (
    b'{"error": {"code": "headers_too_large", '
    b'"message": "the request head is larger than 65536 bytes"}}'
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head larger than MAX_HEAD with 431, and a
    client too slow to send its request (slowclients) with 408."""

    # seconds; `sim serve` sets it from EMROPS_SIM_CLIENT_TIMEOUT (also in spawned workers)
    client_timeout = slowclients.DEFAULT_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self.phase: str | None = slowclients.IDLE  # what we wait for from the client
        self.since = 0.0
        self.body_bytes = 0
        self.send_buffer = slowclients.SendBuffer()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.since = self.loop.time()
        sweeper = slowclients.sweeper_for(self.server_state, self.loop, self.client_timeout)
        sweeper.ensure_running()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self.phase = slowclients.BODY
        self.since = self.loop.time()
        self.body_bytes = 0
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_head = True
        self.phase = None  # the app has the request; after the response uvicorn's keep-alive
        super().on_message_complete()

    # what slowclients.sweep asks
    def reading_paused(self) -> bool:
        return bool(self.flow is not None and self.flow.read_paused)

    def response_started(self) -> bool:
        return self.cycle is not None and self.cycle.response_started

    def write_stalled(self, now: float, timeout: float) -> bool:
        size = self.transport.get_write_buffer_size() if self.transport is not None else 0
        return self.send_buffer.stalled(size, now, timeout)

    def abort(self) -> None:
        self.phase = None
        self.transport.abort()  # close() would wait for the unread buffer to drain

    def refuse(self, answer: bytes | None) -> None:
        self.phase = None
        if self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.phase is None and self._in_head:
            self.phase = slowclients.HEAD  # the first bytes of the next request's head
            self.since = self.loop.time()
        elif self.phase == slowclients.IDLE:
            self.phase = slowclients.HEAD  # the connection's first request; timed from its open
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        # Counted per read while a head is incomplete: a read that also ended the previous
        # request's body counts whole, so the bound is exact to within one read.
        self._head_bytes += len(data)
        if self._head_bytes > MAX_HEAD:
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\n"
                b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + _BODY
            )
            self.transport.close()
