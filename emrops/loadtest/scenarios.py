"""EMRsim journeys through the sim server's API, driven with aiohttp.

A scenario prepares what its requests need (sessions, WebSocket streams) on every target URL
during :meth:`Scenario.setup`, then :meth:`Scenario.iterate` performs one step of the journey
for request number ``i`` and returns the step's name. A failed step raises :class:`StepFailed`
with an error kind (``http_503``, ``timeout``, ``connect``, ...). Steps:

* ``health``: ``GET /health``
* ``session``: ``POST /api/sessions`` (start an encounter)
* ``chat``: ``POST /api/sessions/{id}/messages`` (student question, patient reply)
* ``history``: ``GET /api/sessions/{id}/messages?after=0&limit=50`` (one history page)
* ``ws-chat``: post a question over HTTP and wait for the patient reply to arrive on the
  session's WebSocket; latency is until the reply frame arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

SCENARIOS = ("health", "chat", "history", "ws-chat", "mixed")
# mixed: out of every 10 requests, 5 chat, 3 history, 1 new session, 1 health
MIXED = (
    "chat",
    "history",
    "chat",
    "health",
    "chat",
    "history",
    "session",
    "chat",
    "history",
    "chat",
)
STEPS_OF = {
    "health": ("health",),
    "chat": ("chat",),
    "history": ("history",),
    "ws-chat": ("ws-chat",),
    "mixed": ("chat", "history", "session", "health"),
}
QUESTIONS = (
    "Hello, what brings you in today?",
    "Where exactly is the pain?",
    "When did it start?",
    "Do you take any medications?",
    "Any allergies?",
    "Has anyone in your family had heart problems?",
    "Do you smoke or drink?",
    "How would you rate the pain from one to ten?",
)
HISTORY_MESSAGES = 5  # exchanges posted per session at setup so history pages are not empty


class StepFailed(Exception):
    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class SetupFailed(Exception):
    """The target could not be prepared (unreachable, unauthorized, unexpected answer)."""


ARRIVED_PRUNE_AT = 4096  # arrivals kept before old ones are dropped
ARRIVAL_TTL_S = 600.0  # longer than any --timeout a reply could still be awaited within


@dataclass
class _Stream:
    """One session's WebSocket with the arrival time of every message id it delivered."""

    session_id: str
    ws: aiohttp.ClientWebSocketResponse | None = None
    arrived: dict[int, float] = field(default_factory=dict)
    waiters: dict[int, asyncio.Future[float]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    closed: bool = False
    failure: StepFailed = field(
        default_factory=lambda: StepFailed("ws_closed", "the WebSocket closed")
    )

    async def read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = time.monotonic()
                try:
                    frame = json.loads(msg.data)
                    if frame.get("type") != "message":
                        continue
                    mid = int(frame["data"]["id"])
                except (ValueError, TypeError, KeyError, AttributeError):
                    # not the sim server's frame (a proxy's error page): the stream is no use
                    self.failure = StepFailed("protocol", f"unreadable frame {msg.data[:60]!r}")
                    break
                waiter = self.waiters.pop(mid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(now)
                else:
                    self.arrived[mid] = now
                    if len(self.arrived) > ARRIVED_PRUNE_AT:
                        self._prune(now)
        finally:
            self.closed = True
            for waiter in self.waiters.values():
                if not waiter.done():
                    waiter.set_exception(self.failure)

    def _prune(self, now: float) -> None:
        """Forget arrivals nobody waited for (the student messages: only patient replies are
        awaited); they grew by one per exchange for the whole run."""
        self.arrived = {m: t for m, t in self.arrived.items() if now - t < ARRIVAL_TTL_S}

    async def wait_for(self, mid: int) -> float:
        if mid in self.arrived:
            return self.arrived.pop(mid)
        if self.closed:
            raise self.failure
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters[mid] = future
        return await future


@dataclass
class _Target:
    url: str
    scenario_id: int = 0
    sessions: list[str] = field(default_factory=list)
    streams: list[_Stream] = field(default_factory=list)


def _refuse_redirect(resp: aiohttp.ClientResponse, what: str) -> None:
    """Redirects are never followed (each request counts a 3xx as ``http_3xx``): a redirect
    during setup means --url is not the server's own address, and the run would time another
    host, or a POST turned into a GET by a 302/303."""
    if 300 <= resp.status < 400:
        where = resp.headers.get("Location") or "nowhere"
        raise SetupFailed(
            f"{what} answered {resp.status}, a redirect to {where}: give --url the address "
            "the sim server answers at (redirects are not followed)"
        )


class Scenario:
    """One journey against one or more sim servers (round-robin by request number)."""

    def __init__(
        self,
        name: str,
        urls: list[str],
        *,
        token: str | None = None,
        sessions: int = 4,
        timeout: float = 10.0,
        max_connections: int = 1000,
    ) -> None:
        if name not in SCENARIOS:
            raise ValueError(name)
        self.name = name
        self.targets = [_Target(url.rstrip("/")) for url in urls]
        self.token = token
        self.n_sessions = max(1, sessions)
        self.timeout = timeout
        self.max_connections = max_connections
        self.http: aiohttp.ClientSession | None = None
        self._counter = itertools.count()

    @property
    def steps(self) -> tuple[str, ...]:
        return STEPS_OF[self.name]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    # setup / teardown ------------------------------------------------------------------------
    async def setup(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.max_connections, ttl_dns_cache=300)
        self.http = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers(),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
        )
        for target in self.targets:
            try:
                await self._setup_target(target)
            except aiohttp.ClientConnectorError as exc:
                reason = exc.os_error.strerror or str(exc.os_error)
                raise SetupFailed(f"cannot connect to {target.url}: {reason}") from exc
            except (aiohttp.ClientError, TimeoutError, OSError, StepFailed) as exc:
                raise SetupFailed(f"{target.url}: {type(exc).__name__}: {exc}") from exc
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                # 200/201 with a body that is not the sim server's (another service, a proxy's
                # error page as JSON): name it instead of an 'unexpected KeyError'.
                raise SetupFailed(
                    f"{target.url} does not answer like an EMRsim sim server "
                    f"({type(exc).__name__}: {exc} in its JSON)"
                ) from exc

    async def _setup_target(self, target: _Target) -> None:
        assert self.http is not None
        async with self.http.get(target.url + "/health", allow_redirects=False) as resp:
            _refuse_redirect(resp, f"{target.url}/health")
            if resp.status != 200:
                raise SetupFailed(f"{target.url}/health answered {resp.status}")
        if self.name == "health":
            return
        async with self.http.get(target.url + "/api/scenarios", allow_redirects=False) as resp:
            _refuse_redirect(resp, f"{target.url}/api/scenarios")
            if resp.status == 401:
                raise SetupFailed(
                    f"{target.url} refused the token (401): set EMROPS_SIM_TOKEN to the server's"
                )
            if resp.status != 200:
                raise SetupFailed(f"{target.url}/api/scenarios answered {resp.status}")
            items = (await resp.json())["items"]
        if not items:
            raise SetupFailed(f"{target.url} has no scenarios: run `emrops sim init-db`")
        target.scenario_id = int(items[0]["id"])
        for _ in range(self.n_sessions):
            target.sessions.append(await self._create_session(target))
        if self.name in ("history", "mixed"):
            for sid in target.sessions:
                for n in range(HISTORY_MESSAGES):
                    await self._post(target, sid, QUESTIONS[n % len(QUESTIONS)])
        if self.name == "ws-chat":
            for sid in target.sessions:
                stream = _Stream(sid)
                ws_url = target.url.replace("http", "ws", 1) + f"/ws/sessions/{sid}?after=0"
                stream.ws = await self.http.ws_connect(ws_url, heartbeat=None)
                stream.task = asyncio.create_task(stream.read())
                target.streams.append(stream)

    async def close(self) -> None:
        for target in self.targets:
            for stream in target.streams:
                if stream.ws is not None:
                    await stream.ws.close()
                if stream.task is not None:
                    stream.task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await stream.task
        if self.http is not None:
            await self.http.close()

    # requests ------------------------------------------------------------------------------------
    async def _create_session(self, target: _Target) -> str:
        assert self.http is not None
        body = {"scenario_id": target.scenario_id}
        async with self.http.post(
            target.url + "/api/sessions", json=body, allow_redirects=False
        ) as resp:
            if resp.status != 201:
                raise StepFailed(f"http_{resp.status}", "POST /api/sessions")
            return str((await resp.json())["id"])

    async def _post(self, target: _Target, sid: str, content: str) -> dict[str, Any]:
        assert self.http is not None
        url = f"{target.url}/api/sessions/{sid}/messages"
        async with self.http.post(url, json={"content": content}, allow_redirects=False) as resp:
            if resp.status != 201:
                raise StepFailed(f"http_{resp.status}", "POST messages")
            exchange = await resp.json()
        # A 201 whose body is not an exchange (a proxy or a broken server answering an error
        # body) did not store the message: an error, not a pass.
        patient = exchange.get("patient") if isinstance(exchange, dict) else None
        if not isinstance(patient, dict) or not isinstance(patient.get("id"), int):
            raise StepFailed("protocol", "POST messages answered 201 without an exchange")
        return dict(exchange)

    def step_for(self, i: int) -> str:
        return MIXED[i % len(MIXED)] if self.name == "mixed" else self.name

    async def iterate(self, i: int) -> str:
        """Perform request number ``i``; returns its step name or raises StepFailed."""
        assert self.http is not None
        target = self.targets[i % len(self.targets)]
        step = self.step_for(i)
        n = i // len(self.targets)
        try:
            if step == "health":
                async with self.http.get(target.url + "/health", allow_redirects=False) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise StepFailed(f"http_{resp.status}")
            elif step == "session":
                await self._create_session(target)
            elif step == "chat":
                sid = target.sessions[n % len(target.sessions)]
                await self._post(target, sid, QUESTIONS[n % len(QUESTIONS)])
            elif step == "history":
                sid = target.sessions[n % len(target.sessions)]
                url = f"{target.url}/api/sessions/{sid}/messages?after=0&limit=50"
                async with self.http.get(url, allow_redirects=False) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise StepFailed(f"http_{resp.status}")
            else:  # ws-chat
                stream = target.streams[n % len(target.streams)]
                exchange = await self._post(target, stream.session_id, QUESTIONS[n % 8])
                await stream.wait_for(int(exchange["patient"]["id"]))
        except StepFailed:
            raise
        except TimeoutError:
            raise StepFailed("timeout") from None
        except aiohttp.ClientConnectionError as exc:
            raise StepFailed("connect", str(exc)) from None
        except (aiohttp.ClientError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise StepFailed("protocol", f"{type(exc).__name__}: {exc}") from None
        return step
