"""Back-pressure for WebSocket clients that send but do not read.

uvicorn's websockets protocol answers every ping with a pong written straight to the socket,
whether or not the client reads: one client sending pings and never reading made the server
buffer their pongs without bound (4.6 million pings in 20 s: RSS from 95 MB to 660 MB). This
protocol stops reading from a client while its answers wait in the server's send buffer
(above the transport's high-water mark, 64 KiB) and starts again once the client has taken
them. Such a client then also misses the server's keep-alive pings, so it is dropped after
``ws_ping_interval + ws_ping_timeout`` seconds. Clients that read are not affected.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class BackPressureWebSocketProtocol(WebSocketsSansIOProtocol):
    """WebSocketsSansIOProtocol that does not read while it cannot write."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.write_blocked = False

    def pause_writing(self) -> None:
        super().pause_writing()
        self.write_blocked = True
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        super().resume_writing()
        self.write_blocked = False
        if not self.read_paused:  # uvicorn's own pause (the app's queue is full) still holds
            self.transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.write_blocked and not self.transport.is_closing():
            # uvicorn resumes reading whenever the app takes a message; not while we wait
            self.transport.pause_reading()
