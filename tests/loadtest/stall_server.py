"""A tiny HTTP server whose event loop stalls once: ``python stall_server.py PORT N SECONDS``.

``GET /health`` answers at once, except that request number N blocks the whole server (a
stop-the-world pause, like a long GC or a stuck handler) for SECONDS. Requests that arrive
meanwhile wait in the listen queue: an open-model load test must show them in its percentiles.
"""

from __future__ import annotations

import sys
import time

from aiohttp import web

PORT, STALL_AT, STALL_FOR = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
seen = 0


async def health(_request: web.Request) -> web.Response:
    global seen
    seen += 1
    if seen == STALL_AT:
        time.sleep(STALL_FOR)  # on purpose: block the event loop
    return web.json_response({"status": "ok"})


app = web.Application()
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=PORT, print=None, access_log=None)
