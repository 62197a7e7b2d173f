"""``emrops sim serve``: run the simulation server under uvicorn.

- One process by default. ``--workers N`` (PostgreSQL only: one process owns an SQLite file)
  runs uvicorn's supervisor with N worker processes sharing the socket; they hear each other's
  messages through LISTEN/NOTIFY like separate instances do.
- SIGTERM (and SIGINT) shut down gracefully: no new connections, open requests finish,
  WebSockets close with 1012; the exit code is 0 after SIGTERM.
- SIGHUP re-reads the config (file and environment; a ``--db`` flag still wins) and switches to
  a new database URL without restarting the process. With workers, uvicorn replaces them one by
  one and each new worker reads the config afresh.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import socket
import tempfile
from dataclasses import asdict, dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from emrops.config import load_settings
from emrops.db.azure_auth import is_loopback
from emrops.db.engine import parse_db_url
from emrops.errors import EmropsError, UsageError
from emrops.logs import LOGGER_NAME, get_logger, setup_logging
from emrops.sim import metrics, slowclients
from emrops.sim.app import DEFAULT_VITALS_INTERVAL, create_app
from emrops.sim.headlimit import BoundedHeadProtocol
from emrops.sim.runtime import open_runtime
from emrops.sim.wsflow import BackPressureWebSocketProtocol

log = get_logger(__name__)

WORKER_ENV = "EMROPS_SIM_WORKER_OPTIONS"  # how the parent hands its options to spawned workers
VITALS_ENV = "EMROPS_SIM_VITALS_INTERVAL"  # seconds between live vitals frames (default 2)
CLIENT_TIMEOUT_ENV = "EMROPS_SIM_CLIENT_TIMEOUT"  # seconds a client has to send a request
GRACEFUL_SECONDS = 5


@dataclass(frozen=True)
class ServeOptions:
    """What ``emrops sim serve`` was asked for (the effective settings plus what SIGHUP needs)."""

    db_url: str
    host: str
    port: int
    workers: int
    config_file: str | None  # --config as given (None: the usual search), re-read on SIGHUP
    db_flag: str | None  # --db as given: it keeps winning over the file after SIGHUP
    log_format: str
    insecure: bool = False  # serve a non-loopback address without a token (--insecure)


def _seconds_env(name: str, default: float, most: float = math.inf) -> float:
    """A positive number of seconds (below ``most``) from the variable ``name``."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
        if not 0 < value < most:
            raise ValueError
    except ValueError:
        raise UsageError(
            f"invalid {name}={raw!r}", hint="give a positive number of seconds"
        ) from None
    return value


def _vitals_interval() -> float:
    return _seconds_env(VITALS_ENV, DEFAULT_VITALS_INTERVAL)


def _client_timeout() -> float:
    """Seconds a client has to send a request head, and a body before its rate counts
    (emrops.sim.slowclients); EMROPS_SIM_CLIENT_TIMEOUT, default 10."""
    return _seconds_env(CLIENT_TIMEOUT_ENV, slowclients.DEFAULT_TIMEOUT_S, 86400)


def _prepare_process() -> None:
    """Per serving process: the client deadlines and as many file descriptors as allowed."""
    BoundedHeadProtocol.client_timeout = _client_timeout()
    slowclients.raise_open_file_limit()


def _token(options: ServeOptions) -> str | None:
    token = load_settings(options.config_file, {"db_url": options.db_flag}).get("sim.token")
    return str(token) if token else None


def _max_body(options: ServeOptions) -> int:
    """The request body / WebSocket frame limit (``sim.max_body``, EMROPS_SIM_MAX_BODY)."""
    value = load_settings(options.config_file, {"db_url": options.db_flag}).get("sim.max_body")
    try:
        limit = int(value)
        if limit < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise UsageError(
            f"invalid sim.max_body {value!r}", hint="give a positive number of bytes, e.g. 65536"
        ) from None
    return limit


def is_loopback_address(host: str) -> bool:
    """localhost, 127.0.0.0/8 and ::1 only; "", 0.0.0.0 and :: listen on every interface
    (a bind address, unlike a database host, is never a Unix socket path)."""
    return bool(host) and not host.startswith("/") and is_loopback(host)


def refuse_open_server(host: str, token: str | None, insecure: bool) -> None:
    """UsageError (exit 2) for a non-loopback address without a token, unless ``insecure``:
    the sim API holds student e-mail addresses and must not be open to a network."""
    if token or insecure or is_loopback_address(host):
        return
    raise UsageError(
        f"refusing to serve {host} without a token: anyone who can reach it could read and "
        "write every session",
        hint="set EMROPS_SIM_TOKEN to a long random value (clients send it as a bearer token), "
        "bind --host 127.0.0.1, or pass --insecure on a network you trust",
    )


def _config_db_url(options: ServeOptions) -> str:
    """The database URL the config names now (what SIGHUP switches to)."""
    return load_settings(options.config_file, {"db_url": options.db_flag}).db_url


def _check_options(options: ServeOptions) -> None:
    db = parse_db_url(options.db_url)
    if options.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {options.workers}")
    if db.engine_name == "sqlite" and options.workers > 1:
        raise UsageError(
            f"--workers {options.workers} refused on SQLite: one process owns the SQLite file; "
            "scale out on PostgreSQL",
            hint="run with --workers 1, or serve a PostgreSQL database (see `emrops migrate-db`)",
        )
    if not 0 <= options.port <= 65535:
        raise UsageError(f"invalid port {options.port}", hint="use a port between 1 and 65535")


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise EmropsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or stop what is using it",
        ) from exc
    sock.set_inheritable(True)
    return sock


def _route_uvicorn_logs() -> None:
    """uvicorn's own lines go through the emrops handlers (same format, run id, masking)."""
    ours = logging.getLogger(LOGGER_NAME).handlers
    root = logging.getLogger("uvicorn")
    root.handlers = list(ours)
    root.propagate = False
    root.setLevel(logging.INFO)
    logging.getLogger("uvicorn.error").handlers = []
    logging.getLogger("uvicorn.error").propagate = True
    # No access lines: /metrics counts every request, and logging each would slow benchmarks.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False


def _uvicorn_config(app: Any, options: ServeOptions, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=options.host,
        port=options.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        lifespan="on",
        ws_ping_interval=20,
        ws_ping_timeout=20,
        # the websockets library refuses a bigger frame from its header, before buffering it
        ws_max_size=_max_body(options),
        http=BoundedHeadProtocol,
        ws=BackPressureWebSocketProtocol,
        **extra,
    )


def run_server(options: ServeOptions) -> None:
    """Serve until SIGTERM/SIGINT. Raises UsageError (exit 2) for --workers > 1 on SQLite or bad
    values, DatabaseError when the database is unreachable or has no schema (hint: init-db),
    EmropsError when the address is in use. Returns normally after SIGTERM."""
    _check_options(options)
    vitals_interval = _vitals_interval()
    _prepare_process()
    token = _token(options)
    refuse_open_server(options.host, token, options.insecure)
    _route_uvicorn_logs()
    if options.workers > 1:
        _run_workers(options)
        return
    sock = _bind(options.host, options.port)  # a busy port fails before the database is opened
    try:
        app = create_app(
            options.db_url,
            token,
            vitals_interval=vitals_interval,
            reloader=lambda: _config_db_url(options),
            handle_sighup=True,
            max_body=_max_body(options),
        )
    except BaseException:
        sock.close()
        raise
    server = uvicorn.Server(_uvicorn_config(app, options))
    log.info(
        "serving %s on http://%s:%d (pid %d)",
        app.state.sim.runtime.masked_url,
        options.host,
        sock.getsockname()[1],
        os.getpid(),
    )
    # uvicorn re-raises the signal that stopped it once it has shut down; a no-op SIGTERM handler
    # turns that into a clean return, so a supervisor's SIGTERM ends with exit code 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise EmropsError("the server failed to start", hint="see the log lines above")
    log.info("server stopped")


def _run_workers(options: ServeOptions) -> None:
    # Check the database once here, so a missing schema is one clear error, not N crashed workers.
    open_runtime(options.db_url, processes=options.workers).engine.dispose()
    metrics_dir = tempfile.mkdtemp(prefix="emrops-sim-metrics-")
    os.environ[metrics.MULTIPROC_ENV] = metrics_dir
    os.environ[WORKER_ENV] = json.dumps(
        {**asdict(options), "run_id": _current_run_id(), "vitals_interval": _vitals_interval()}
    )
    sock = _bind(options.host, options.port)
    config = _uvicorn_config(
        "emrops.sim.server:worker_app", options, factory=True, workers=options.workers
    )
    log.info(
        "serving %s on http://%s:%d with %d workers (supervisor pid %d)",
        parse_db_url(options.db_url).masked(),
        options.host,
        sock.getsockname()[1],
        options.workers,
        os.getpid(),
    )
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        sock.close()
        os.environ.pop(WORKER_ENV, None)
        os.environ.pop(metrics.MULTIPROC_ENV, None)
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(p.exitcode == uvicorn.config.STARTUP_FAILURE for p in supervisor.processes):
        raise EmropsError("a worker failed to start", hint="see the log lines above")
    log.info("server stopped")


def _current_run_id() -> str:
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        for flt in handler.filters:
            run_id = getattr(flt, "run_id", None)
            if run_id:
                return str(run_id)
    return ""


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn factory), built from the parent's options.

    The config is read afresh here: after SIGHUP the supervisor replaces each worker, and the
    new ones come up on the database the config names now."""
    raw = json.loads(os.environ[WORKER_ENV])
    vitals_interval = float(raw.pop("vitals_interval"))
    run_id = raw.pop("run_id") or None
    options = ServeOptions(**raw)
    setup_logging(options.log_format, run_id=run_id)
    _route_uvicorn_logs()
    _prepare_process()
    # SIGHUP is the supervisor's business (it replaces workers); a stray one must not kill us.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return create_app(
        _config_db_url(options),
        _token(options),
        vitals_interval=vitals_interval,
        max_body=_max_body(options),
        processes=options.workers,
    )
