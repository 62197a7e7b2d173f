"""The sim server's gate: token check and request size limits as ASGI middleware, so no route
can forget them and nothing is read from a request that will be refused.

HTTP, in this order, before the app sees the request:

1. ``/api/...`` needs the bearer token (when one is configured): 401 without reading the body.
   ``/health``, ``/ready``, ``/metrics`` and the API docs stay public.
2. A ``Content-Length`` above the limit: 413 without reading the body.
3. A body without a length (chunked) is counted as it arrives; past the limit the client gets
   413 and the app sees a disconnect. At most one chunk beyond the limit is ever held.

WebSocket (``/ws/...``): a token in the ``Authorization`` header (or the deprecated ``?token=``
query parameter) is checked before the handshake completes: a wrong one is refused with 401. A
connection without one is marked ``pending``: the route accepts it and the first frame must be
``{"type": "auth", "token": "..."}`` (at most PRE_AUTH_FRAME_BYTES, within AUTH_DEADLINE_S).
Every frame from the client is capped: PRE_AUTH_FRAME_BYTES before authentication, the body
limit after; a bigger one closes the connection with 1009 and a reason. (uvicorn's
``ws_max_size`` is set to the same limit, so the server does not even buffer such a frame.)

Refusals use the API's error body ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

DEFAULT_MAX_BODY = 64 * 1024
PRE_AUTH_FRAME_BYTES = 4 * 1024
AUTH_DEADLINE_S = 5.0
AUTH_SCOPE_KEY = "emrops.auth"  # scope["state"][...]: "ok" | "pending" (WebSocket only)
TOO_BIG_CLOSE = 1009  # RFC 6455 "message too big"
PROTECTED_PREFIXES = ("/api", "/ws")  # what needs the token; everything else is public

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


def token_matches(expected: str | None, given: str | None) -> bool:
    """True when no token is configured, or ``given`` is it (constant-time comparison)."""
    if not expected:
        return True
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def _query_token(scope: Scope) -> str | None:
    from urllib.parse import parse_qs

    raw = scope.get("query_string") or b""
    if b"token=" not in raw:
        return None
    values = parse_qs(raw.decode("latin-1")).get("token")
    return values[0] if values else None


def _body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()


async def send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """An HTTP error response with the API's error body (``Connection: close``: the unread body
    of the request is not drained)."""
    body = _body(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: bearer token and body/frame size limits (see the module docstring)."""

    def __init__(self, app: App, *, token: Callable[[], str | None], max_body: int):
        self.app = app
        self.token = token  # read per request: the app's state holds the current token
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def _protected(self, scope: Scope) -> bool:
        path = str(scope.get("path") or "")
        return any(path == p or path.startswith(p + "/") for p in PROTECTED_PREFIXES)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        authorization: str | None = None
        length: bytes | None = None
        chunked: bytes | None = None
        for key, value in scope.get("headers") or ():
            key = key.lower()
            if key == b"authorization":
                authorization = value.decode("latin-1")
            elif key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                chunked = value
        expected = self.token()
        if (
            expected
            and self._protected(scope)
            and not token_matches(expected, bearer(authorization))
        ):
            await send_error(
                send,
                401,
                "unauthorized",
                "wrong bearer token" if authorization is not None else "missing bearer token",
                ((b"www-authenticate", b"Bearer"),),
            )
            return
        limit = self.max_body
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await send_error(send, 400, "bad_request", "invalid Content-Length")
                return
            if declared > limit:
                await send_error(send, 413, "payload_too_large", _too_large(limit))
                return
        if chunked is None:
            # Without Transfer-Encoding the server hands the app at most Content-Length bytes,
            # and no body at all without that either (RFC 9112 6.3): nothing to count. (With
            # both headers the chunked framing wins, so a Content-Length proves nothing then.)
            await self.app(scope, receive, send)
            return
        state = {"seen": 0, "refused": False, "started": False}

        async def limited_receive() -> Message:
            if state["refused"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["refused"] = True
                    if not state["started"]:
                        state["started"] = True
                        await send_error(send, 413, "payload_too_large", _too_large(limit))
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["refused"]:
                return  # we answered 413 already: whatever the app says now is dropped
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self.token()
        status = "ok"
        if expected and self._protected(scope):
            given = bearer(_header(scope, b"authorization")) or _query_token(scope)
            if given is None:
                status = "pending"  # the route asks for an auth frame
            elif not token_matches(expected, given):
                await receive()  # websocket.connect: the app's answer comes after it
                await _deny_websocket(scope, send)
                return
        scope.setdefault("state", {})[AUTH_SCOPE_KEY] = status
        closed = {"done": False}
        limit = self.max_body

        async def limited_receive() -> Message:
            if closed["done"]:
                return {"type": "websocket.disconnect", "code": TOO_BIG_CLOSE}
            message = await receive()
            if message["type"] == "websocket.receive":
                cap = limit if scope["state"].get(AUTH_SCOPE_KEY) == "ok" else PRE_AUTH_FRAME_BYTES
                data = message.get("bytes") or message.get("text") or b""
                size = len(data.encode() if isinstance(data, str) else data)
                if size > cap:
                    closed["done"] = True
                    await send(
                        {
                            "type": "websocket.close",
                            "code": TOO_BIG_CLOSE,
                            "reason": f"frame of {size} bytes is over the limit of {cap} bytes",
                        }
                    )
                    return {"type": "websocket.disconnect", "code": TOO_BIG_CLOSE}
            return message

        async def guarded_send(message: Message) -> None:
            if closed["done"]:
                return
            await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _deny_websocket(scope: Scope, send: Send) -> None:
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = _body("unauthorized", "missing or wrong token")
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b"Bearer"),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # pragma: no cover - uvicorn and the test client both support denial responses
        await send({"type": "websocket.close", "code": 4401, "reason": "missing or wrong token"})


def _too_large(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes"
