"""Reading the sim server's WebSocket frames in the probe, and naming the ones it cannot read.

The sim server sends JSON text frames ``{"type": "message" | "vitals" | "error", "data": ...}``
(docs/sim.md). A frame that is not that (text that is not JSON, JSON that is not an object, a
``message`` without an integer id, a binary frame, text that is not UTF-8) is a protocol error:
the probe's client stops, as a browser fails such a connection (close 1007 / 1003), and the
report names the frame. Before, the first such text frame ended the client's task with an
uncaught JSONDecodeError: the report still showed it "connected", and everything after it
counted as lost without a word on why.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

PREVIEW = 60  # characters of a bad frame shown in the report


class BadFrame(Exception):
    """A frame the sim server would never send; the message says what was wrong."""


def _preview(text: str) -> str:
    return repr(text[:PREVIEW] + ("..." if len(text) > PREVIEW else ""))


def read_frame(msg: aiohttp.WSMessage) -> tuple[str, int | None]:
    """``(type, message id or None)`` of a received frame; raises BadFrame for anything the
    sim server does not send. Close frames and a closed socket are not errors: the caller
    handles them before."""
    if msg.type == aiohttp.WSMsgType.ERROR:
        raise BadFrame(f"an unreadable frame: {msg.data}")  # e.g. invalid UTF-8, bad opcode
    if msg.type == aiohttp.WSMsgType.BINARY:
        raise BadFrame(f"a binary frame of {len(msg.data)} bytes (the sim server sends text)")
    text = str(msg.data)
    try:
        frame: Any = json.loads(text)
    except ValueError:
        raise BadFrame(f"a text frame that is not JSON: {_preview(text)}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise BadFrame(f"a frame that is not a {{type, data}} object: {_preview(text)}")
    kind = frame["type"]
    if kind != "message":
        return kind, None
    data = frame.get("data")
    mid = data.get("id") if isinstance(data, dict) else None
    if not isinstance(mid, int) or isinstance(mid, bool):
        raise BadFrame(f"a message frame without an integer id: {_preview(text)}")
    return kind, mid


def connection_lost(msg: aiohttp.WSMessage) -> bool:
    """True for an ERROR that is not the server's frame (a missed heartbeat pong, a reset):
    the client reconnects. (Close frames end ``async for msg in ws`` before this is asked.)"""
    return msg.type == aiohttp.WSMsgType.ERROR and not isinstance(msg.data, aiohttp.WebSocketError)
