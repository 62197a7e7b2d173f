"""One data-layer operation on a DB-API connection: checkout (or this thread's pinned
connection), the transaction mode, one retry on a fresh connection after a dropped one.

Used by :mod:`emrops.db.queries`. An operation is a function ``work(cursor, codec, attempt)``
run in one of three modes:

- ``READ``: one or more reads; PostgreSQL runs them in autocommit (no BEGIN/ROLLBACK round
  trips), SQLite outside any transaction;
- ``WRITE``: a write transaction (``BEGIN IMMEDIATE`` on SQLite; psycopg's implicit BEGIN on
  PostgreSQL), committed here;
- ``STATEMENT``: PostgreSQL only, one autocommitted write statement (its own transaction, so
  one round trip). Sending it is sending the COMMIT.

Retry rule (the clarification of issue #17): a read, and a write whose COMMIT was not sent yet,
is retried once on a fresh connection when the connection turns out to be dropped. A connection
lost with the COMMIT in flight leaves the outcome unknown: DatabaseError, never a repeat. For a
``STATEMENT`` the connection is first checked without a round trip: a pooled connection that is
idle has nothing to read, so a readable socket means the server closed it (backend terminated,
server restarted, idle timeout) and it is replaced before anything is sent.

:func:`pinned` keeps one connection checked out for the calling thread (a benchmark client holds
its connection for a whole cell, as pgbench does); without it every operation checks one out of
the engine's pool and returns it.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Callable, Iterator, Mapping
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emrops.db.engine import translate
from emrops.errors import DatabaseError


class Mode(Enum):
    READ = "read"
    WRITE = "write"
    STATEMENT = "statement"


READ, WRITE, STATEMENT = Mode.READ, Mode.WRITE, Mode.STATEMENT


class Attempt:
    """Where a write got to: once ``commit_sent`` is set, a lost connection means an unknown
    outcome and the operation must not be repeated."""

    __slots__ = ("commit_sent",)

    def __init__(self) -> None:
        self.commit_sent = False


class _ClosedWhileIdle(Exception):
    """The server closed a pooled connection while it sat idle (nothing was sent on it)."""


_CURSOR = "emrops.cursor"  # key of the connection's reused cursor in the pool record's info
_retries = 0
_retries_lock = threading.Lock()


def retried_operations() -> int:
    """How many operations this process retried after a dropped connection (for metrics)."""
    return _retries


def _count_retry() -> None:
    global _retries
    with _retries_lock:
        _retries += 1


# ---------------------------------------------------------------------------------------------
# Pinned connections: one per (thread, engine)


class _Pin:
    __slots__ = ("fairy",)

    def __init__(self) -> None:
        self.fairy: Any = None


_local = threading.local()


def _pins() -> dict[Engine, _Pin]:
    pins: dict[Engine, _Pin] | None = getattr(_local, "pins", None)
    if pins is None:
        pins = _local.pins = {}
    return pins


@contextlib.contextmanager
def pinned(engine: Engine) -> Iterator[None]:
    """Within the block, this thread's operations on ``engine`` use one connection, checked out
    at the first operation and returned to the pool at the end (replaced if it drops). Saves
    the pool's checkout, reset and return per operation; the SQL is the same."""
    pins = _pins()
    if engine in pins:  # nested: the outer block owns it
        yield
        return
    pin = pins[engine] = _Pin()
    try:
        yield
    finally:
        del pins[engine]
        fairy, pin.fairy = pin.fairy, None
        if fairy is not None:
            conn = fairy.driver_connection
            if engine.dialect.name == "postgresql" and conn is not None:
                with contextlib.suppress(Exception):
                    conn.autocommit = False  # the pool's connections rest in transaction mode
            fairy.close()


# ---------------------------------------------------------------------------------------------


def _wrap(engine: Engine, exc: BaseException, invalidated: bool) -> sa.exc.DBAPIError:
    if invalidated:
        # a lost connection is "unavailable" (503), whatever class the driver gave the error
        # (PostgreSQL ends an idle transaction with an InternalError, for example)
        return sa.exc.OperationalError(None, None, exc, connection_invalidated=True)
    wrapped = sa.exc.DBAPIError.instance(
        None,
        None,
        exc,  # type: ignore[arg-type]
        engine.dialect.loaded_dbapi.Error,
        connection_invalidated=invalidated,
        dialect=engine.dialect,
    )
    assert isinstance(wrapped, sa.exc.DBAPIError)
    return wrapped


def _check_idle(conn: Any) -> None:
    """Raise _ClosedWhileIdle when an idle psycopg connection has something to read: the
    server's goodbye (FATAL and EOF), never an answer, since nothing is in flight. A poll of
    the socket, not a round trip."""
    try:
        readable = select.select([conn.pgconn.socket], [], [], 0)[0]
    except Exception as exc:  # the socket is gone already
        raise _ClosedWhileIdle(str(exc)) from exc
    if readable:
        raise _ClosedWhileIdle("the server closed the connection while it was idle")


def _checkout(engine: Engine, dbapi_error: type[BaseException]) -> Any:
    try:
        return engine.raw_connection()
    except sa.exc.DBAPIError as exc:
        raise translate(exc, engine.url) from exc
    except dbapi_error as exc:  # the pool does not wrap a failed connect
        wrapped = _wrap(engine, exc, False)
        raise translate(wrapped, engine.url) from wrapped


def run(
    engine: Engine,
    work: Callable[[Any, Any, Attempt], Any],
    codecs: Mapping[bool, Any],
    mode: Mode,
) -> Any:
    """Run ``work(cursor, codecs[is_postgresql], attempt)`` in ``mode`` (see the module doc).
    Raises DatabaseError for a database failure (the driver error, wrapped as SQLAlchemy's
    DBAPIError, as its cause), and whatever ``work`` raises otherwise."""
    pg = engine.dialect.name == "postgresql"
    codec = codecs[pg]
    dbapi_error = engine.dialect.loaded_dbapi.Error
    pin = _pins().get(engine) if getattr(_local, "pins", None) else None
    write = mode is not READ
    single = mode is STATEMENT
    if single and not pg:
        raise ValueError("STATEMENT mode is for PostgreSQL")
    for attempt_no in (1, 2):
        fairy = pin.fairy if pin is not None else None
        if fairy is None:
            fairy = _checkout(engine, dbapi_error)
            if pin is not None:
                pin.fairy = fairy
        conn: Any = fairy.driver_connection
        attempt = Attempt()
        cur = None
        try:
            if pg:
                autocommit = mode is not WRITE  # one statement each: no BEGIN/COMMIT round trips
                if conn.autocommit is not autocommit:
                    conn.autocommit = autocommit
                if single:
                    _check_idle(conn)
            if pg:
                # one cursor per connection, kept in the pool's record of it: a psycopg cursor
                # caches its parameter dumpers and column loaders (a new one looks them up
                # again) and holds no server state between operations
                info = fairy.info
                cur = info.get(_CURSOR)
                if cur is None or cur.connection is not conn:  # new or reconnected
                    cur = info[_CURSOR] = conn.cursor()
            else:  # an sqlite3 cursor left un-reset would keep its read snapshot open
                cur = conn.cursor()
            if write and not pg:
                cur.execute("BEGIN IMMEDIATE")
            attempt.commit_sent = single
            result = work(cur, codec, attempt)
            if mode is WRITE:
                attempt.commit_sent = True
                conn.commit()
            if pin is None:
                if pg and conn.autocommit:
                    conn.autocommit = False  # the pool's connections rest in transaction mode
                fairy.close()
            return result
        except BaseException as exc:
            idle_closed = isinstance(exc, _ClosedWhileIdle)
            dropped = idle_closed or (
                isinstance(exc, dbapi_error) and engine.dialect.is_disconnect(exc, conn, cur)
            )
            if dropped:
                # every connection opened before now is suspect: the pool replaces them lazily
                engine.pool._invalidate(fairy, exc)  # noqa: SLF001 - what sa.Connection does
                if pin is not None:
                    pin.fairy = None
            elif pin is None:
                if pg:
                    with contextlib.suppress(Exception):  # keep the original error
                        conn.autocommit = False
                fairy.close()  # the pool rolls back an open transaction
            else:
                with contextlib.suppress(Exception):  # the pool's reset, by hand
                    conn.rollback()
            if not dropped and not isinstance(exc, dbapi_error):
                raise
            if dropped and not attempt.commit_sent and attempt_no == 1:
                _count_retry()
                continue
            wrapped = _wrap(engine, exc, dropped)
            error = translate(wrapped, engine.url)
            if dropped and attempt.commit_sent:
                error = DatabaseError(
                    f"{error.message} (the connection was lost during COMMIT: the write may or "
                    "may not have been stored; it was not repeated)",
                    hint="read the session back before sending again",
                )
            raise error from wrapped
    raise AssertionError("unreachable")  # pragma: no cover
