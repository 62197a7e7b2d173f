"""A bound on the request head (request line + headers) the server buffers per connection.

uvicorn's httptools protocol has no such bound: llhttp hands each header to Python only once it
is complete, so an unauthenticated client trickling one endless header line made the server
buffer it all (3 connections x 50 MB raised RSS by 150 MB) before any middleware could run.
This protocol answers 431 and closes once a head is larger than MAX_HEAD bytes. (uvicorn's h11
protocol bounds the head itself, at 16 KiB.)
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# nginx's default large_client_header_buffers is 4 x 8 KiB; a little more leaves room for
# long cookies and bearer tokens.
MAX_HEAD = 64 * 1024

_BODY = (
    b'{"error": {"code": "headers_too_large", '
    b'"message": "the request head is larger than 65536 bytes"}}'
)


class BoundedHeadProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that refuses a request head larger than MAX_HEAD with 431."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
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
