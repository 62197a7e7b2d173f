"""The WebSocket reliability probe: N clients, one writer, optional periodic server restarts.

* The probe creates ``sessions`` sessions over HTTP and connects ``clients`` WebSocket clients
  (client ``c`` follows session ``c % sessions``) to ``ws://HOST:PORT/ws/sessions/{id}?after=0``.
* A writer posts student questions round-robin at ``rate`` (each stores a student message and
  a patient reply). Posts refused while the server restarts are counted, not retried.
* Each client remembers the highest message id it saw; when its socket closes (a ``reconnect``
  error frame, a close, a reset) it reconnects with exponential backoff and full jitter
  (0.1 s doubling to 5 s) and resumes with ``?after=<that id>``.
* With ``restart_cmd`` the command (split with shlex, never a shell) is run ``restart_every``
  after the start and then ``restart_every`` after the previous run returned (so the server
  gets that much uptime between restarts); it should restart the server and return once it is
  back. A run still going at the end is waited for.
* At the end the writer stops, the probe reads every session's full history over HTTP (the
  truth), waits up to ``settle`` for the clients to catch up, and compares: per client,
  messages expected, received, lost, duplicated, out of order, and reconnect times.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shlex
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from emrops.errors import EmropsError, UsageError
from emrops.sockets import frames

BACKOFF_START = 0.1
BACKOFF_MAX = 5.0
SETUP_TIMEOUT_S = 10.0  # preparing the sessions, all requests together
QUESTIONS = ("Where is the pain?", "When did it start?", "Any allergies?", "Do you smoke?")


class ProbeError(EmropsError):
    """The probe could not run (server unreachable, sessions not created)."""


@dataclass
class ProbeOptions:
    url: str
    clients: int = 50
    duration: float = 60.0
    sessions: int | None = None  # default: min(clients, 10)
    rate: float = 10.0  # writer posts per second
    restart_cmd: str | None = None
    restart_every: float | None = None
    restart_timeout: float = 60.0
    settle: float = 15.0  # time for clients to catch up after the writer stopped
    token: str | None = None

    def validate(self) -> list[str]:
        """Check the options; returns the restart command's argv (empty without one)."""
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"invalid --url {self.url!r}", hint="e.g. http://127.0.0.1:8000")
        if self.clients < 1:
            raise UsageError("--clients must be at least 1")
        if self.sessions is not None and self.sessions < 1:
            raise UsageError("--sessions must be at least 1")
        if self.duration <= 0 or self.rate <= 0:
            raise UsageError("--duration and --rate must be above zero")
        if (self.restart_cmd is None) != (self.restart_every is None):
            raise UsageError(
                "--restart-cmd and --restart-every go together",
                hint="e.g. --restart-cmd 'systemctl restart emrsim' --restart-every 20s",
            )
        if self.restart_cmd is None:
            return []
        if self.restart_every is not None and self.restart_every <= 0:
            raise UsageError("--restart-every must be above zero")
        try:
            argv = shlex.split(self.restart_cmd)
        except ValueError as exc:
            raise UsageError(f"cannot parse --restart-cmd: {exc}") from None
        if not argv:
            raise UsageError("--restart-cmd is empty")
        if shutil.which(argv[0]) is None:
            raise UsageError(
                f"--restart-cmd: {argv[0]!r} not found or not executable",
                hint="give the full path of the program (no shell is used)",
            )
        return argv


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(pct / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def _times(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50_s": round(_percentile(values, 50), 4),
        "p95_s": round(_percentile(values, 95), 4),
        "max_s": round(max(values), 4) if values else 0.0,
    }


@dataclass
class _Client:
    index: int
    session_id: str
    ws_base: str
    last_id: int = 0
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    out_of_order: int = 0
    reconnect_times: list[float] = field(default_factory=list)
    connect_failures: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    online: bool = False  # its socket is open now (False while it reconnects)
    broken: str | None = None  # the frame it could not read (frames.BadFrame); it stopped there
    last_error: str = ""  # why the last connection attempt failed

    def on_message(self, mid: int) -> None:
        if mid in self.seen:
            self.duplicates += 1
            return
        if mid < self.last_id:
            self.out_of_order += 1
        self.seen.add(mid)
        self.last_id = max(self.last_id, mid)

    async def run(self, http: aiohttp.ClientSession) -> None:
        backoff = BACKOFF_START
        lost_at: float | None = None
        while True:
            url = f"{self.ws_base}/ws/sessions/{self.session_id}?after={self.last_id}"
            try:
                async with http.ws_connect(url, heartbeat=5.0) as ws:
                    if lost_at is not None:
                        self.reconnect_times.append(time.monotonic() - lost_at)
                    lost_at = None
                    backoff = BACKOFF_START
                    self.connected.set()
                    self.online = True
                    async for msg in ws:
                        if frames.connection_lost(msg):
                            break
                        try:
                            kind, mid = frames.read_frame(msg)
                        except frames.BadFrame as exc:
                            # named at once: closing may wait for a server that never answers
                            self.broken = str(exc)
                            break
                        if mid is not None:
                            self.on_message(mid)
                        elif kind == "error":
                            break  # reconnect / database_unavailable: the server closes next
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.connect_failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self.broken is not None:
                return  # it stops there: what it did not get counts as lost
            self.online = False
            if lost_at is None:
                lost_at = time.monotonic()
            await asyncio.sleep(random.uniform(0, backoff))  # full jitter
            backoff = min(backoff * 2, BACKOFF_MAX)


@dataclass
class _Writer:
    posted: int = 0
    refused: int = 0
    failed: int = 0


async def _post(http: aiohttp.ClientSession, base: str, sid: str, content: str) -> int:
    async with http.post(f"{base}/api/sessions/{sid}/messages", json={"content": content}) as r:
        await r.read()
        return r.status


async def _writer(
    http: aiohttp.ClientSession,
    base: str,
    sessions: list[str],
    rate: float,
    end: float,
    stats: _Writer,
) -> None:
    start = time.monotonic()
    i = 0
    while time.monotonic() < end:
        sid = sessions[i % len(sessions)]
        try:
            status = await _post(http, base, sid, QUESTIONS[i % len(QUESTIONS)])
            if status == 201:
                stats.posted += 1
            else:
                stats.refused += 1
        except (aiohttp.ClientError, OSError, TimeoutError):
            stats.failed += 1
        i += 1
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))


async def _restarter(
    argv: list[str],
    every: float,
    timeout: float,
    start: float,
    end: float,
    log: list[dict[str, Any]],
) -> None:
    at = start + every
    while at < end:
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        began = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), timeout)
            code: int | None = proc.returncode
        except TimeoutError:
            proc.kill()
            output, _ = await proc.communicate()
            code = None
        log.append(
            {
                "at_s": round(began - start, 3),
                "seconds": round(time.monotonic() - began, 3),
                "exit_code": code,
                "output": output.decode(errors="replace")[-2000:],
            }
        )
        at = time.monotonic() + every  # the server gets `every` seconds of uptime each time


async def _history(http: aiohttp.ClientSession, base: str, sid: str, deadline: float) -> list[int]:
    """Every message id of the session, from the HTTP history (retried until ``deadline``)."""
    delay = 0.1
    while True:
        try:
            ids: list[int] = []
            after = 0
            while True:
                url = f"{base}/api/sessions/{sid}/messages?after={after}&limit=500"
                async with http.get(url) as resp:
                    if resp.status != 200:
                        raise aiohttp.ClientResponseError(
                            resp.request_info, (), status=resp.status, message="history"
                        )
                    page = await resp.json()
                ids += [int(m["id"]) for m in page["items"]]
                if not page["items"]:
                    return ids
                after = int(page["next_after"])
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise ProbeError(f"cannot read the history of session {sid}: {exc}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def _setup(http: aiohttp.ClientSession, base: str, n: int) -> list[str]:
    try:
        async with http.get(f"{base}/api/scenarios") as resp:
            if resp.status == 401:
                raise ProbeError(
                    f"{base} refused the token (401)",
                    hint="set EMROPS_SIM_TOKEN to the server's token",
                )
            if resp.status != 200:
                raise ProbeError(f"{base}/api/scenarios answered {resp.status}")
            scenario_id = int((await resp.json())["items"][0]["id"])
        sessions = []
        for _ in range(n):
            body = {"scenario_id": scenario_id}
            async with http.post(f"{base}/api/sessions", json=body) as resp:
                if resp.status != 201:
                    raise ProbeError(f"{base}/api/sessions answered {resp.status}")
                sessions.append(str((await resp.json())["id"]))
        return sessions
    except aiohttp.ClientConnectorError as exc:
        raise ProbeError(
            f"cannot connect to {base}: {exc.os_error.strerror or exc.os_error}",
            hint="check that the sim server runs there (emrops sim serve)",
        ) from None
    except TimeoutError:
        # a request's own 10 s timeout (TimeoutError is an OSError): the same silence as the
        # caller's deadline, which says so with the URL (this raced it under load)
        raise
    except (aiohttp.ClientError, OSError, IndexError) as exc:
        raise ProbeError(
            f"cannot prepare sessions on {base}: {type(exc).__name__}: {exc}"
        ) from None


async def run_probe_async(opts: ProbeOptions, argv: list[str]) -> dict[str, Any]:
    base = opts.url.rstrip("/")
    ws_base = "ws" + base[len("http") :]
    n_sessions = opts.sessions or min(opts.clients, 10)
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    timeout = aiohttp.ClientTimeout(total=10, sock_connect=3)
    connector = aiohttp.TCPConnector(limit=opts.clients + 20)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout, connector=connector) as http:
        try:  # one deadline for all of it: a server that stops answering cannot take n x 10 s
            sessions = await asyncio.wait_for(_setup(http, base, n_sessions), SETUP_TIMEOUT_S)
        except TimeoutError:
            raise ProbeError(
                f"no answer from {base} within {SETUP_TIMEOUT_S:g}s while preparing sessions",
                hint="check that the sim server at --url answers (emrops health --url URL)",
            ) from None
        clients = [_Client(c, sessions[c % n_sessions], ws_base) for c in range(opts.clients)]
        tasks = [asyncio.create_task(c.run(http)) for c in clients]
        try:
            try:
                await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in clients)), 15)
            except TimeoutError:
                failed = next((c for c in clients if not c.connected.is_set()), clients[0])
                raise ProbeError(
                    "the WebSocket clients could not connect within 15s"
                    + (f" (last error: {failed.last_error})" if failed.last_error else ""),
                    hint="check that --url serves the sim server's /ws/sessions/{id} WebSocket",
                ) from None
            start = time.monotonic()
            end = start + opts.duration
            writer = _Writer()
            restarts: list[dict[str, Any]] = []
            jobs = [_writer(http, base, sessions, opts.rate, end, writer)]
            if argv and opts.restart_every:
                jobs.append(
                    _restarter(argv, opts.restart_every, opts.restart_timeout, start, end, restarts)
                )
            await asyncio.gather(*jobs)
            deadline = time.monotonic() + opts.settle
            truth = {sid: await _history(http, base, sid, deadline) for sid in sessions}
            while time.monotonic() < deadline:
                if all(set(truth[c.session_id]) <= c.seen for c in clients):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.3)  # late duplicates, if any, show up now
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return _report(opts, clients, truth, writer, restarts, n_sessions, time.monotonic() - start)


def _state(c: _Client) -> str:
    if c.broken is not None:
        return "protocol_error"
    return "connected" if c.online else "reconnecting"


def _report(
    opts: ProbeOptions,
    clients: list[_Client],
    truth: dict[str, list[int]],
    writer: _Writer,
    restarts: list[dict[str, Any]],
    n_sessions: int,
    elapsed: float,
) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    all_reconnects: list[float] = []
    for c in clients:
        expected = set(truth[c.session_id])
        missing = sorted(expected - c.seen)
        # Lost means "not delivered after the client resumed": a client still reconnecting
        # when the probe ends has not resumed yet, so what it misses is pending, not lost.
        # A client stopped by a frame it could not read will not get the rest: lost.
        gone = c.online or c.broken is not None
        lost = missing if gone else []
        pending = [] if gone else missing
        all_reconnects += c.reconnect_times
        rows.append(
            {
                "client": c.index,
                "session_id": c.session_id,
                "state": _state(c),
                "protocol_error": c.broken,
                "expected": len(expected),
                "received": len(c.seen & expected),
                "lost": len(lost),
                "lost_ids": lost[:20],
                "reconnecting_missing": len(pending),
                "unexpected": len(c.seen - expected),
                "duplicated": c.duplicates,
                "out_of_order": c.out_of_order,
                "reconnects": len(c.reconnect_times),
                "connect_failures": c.connect_failures,
                "reconnect_time": _times(c.reconnect_times),
            }
        )
    totals = {
        key: sum(r[key] for r in rows)
        for key in (
            "expected",
            "received",
            "lost",
            "reconnecting_missing",
            "unexpected",
            "duplicated",
            "out_of_order",
            "reconnects",
        )
    }
    totals["protocol_errors"] = sum(1 for r in rows if r["protocol_error"])
    failed_restarts = [r for r in restarts if r["exit_code"] != 0]
    return {
        "schema": "emrops.sockets.probe/1",
        "config": {
            "url": opts.url,
            "clients": opts.clients,
            "sessions": n_sessions,
            "duration_s": opts.duration,
            "rate": opts.rate,
            "restart_cmd": opts.restart_cmd,
            "restart_every_s": opts.restart_every,
        },
        "elapsed_s": round(elapsed, 3),
        "writer": {"posted": writer.posted, "refused": writer.refused, "failed": writer.failed},
        "restarts": restarts,
        "totals": totals,
        "reconnect_time": _times(all_reconnects),
        "reconnecting_clients": sum(1 for r in rows if r["state"] == "reconnecting"),
        "clients": rows,
        "passed": totals["lost"] == 0
        and totals["duplicated"] == 0
        and totals["protocol_errors"] == 0
        and not failed_restarts,
        "restart_failures": len(failed_restarts),
    }


def run_probe(opts: ProbeOptions) -> dict[str, Any]:
    """Run the probe and return its report (``passed`` is False on loss or duplicates)."""
    argv = opts.validate()
    return asyncio.run(run_probe_async(opts, argv))
