"""EMRsim data access: the queries the simulation server, the benchmark and the tools share.

The hot path is lean on purpose (see docs/benchmarks.md): each operation is one fixed SQL text
per dialect, built once at import, run on the pooled DB-API connection (sqlite3 or psycopg 3,
which prepares a statement on the server after a few uses), in the fewest round trips:

- reads are one statement outside any transaction (PostgreSQL autocommit for that statement);
- a write is ``BEGIN [IMMEDIATE]``, one SELECT that reads the maintenance flag together with the
  row the write depends on, one INSERT (both messages of an exchange in one statement), COMMIT;
- except PostgreSQL's chat exchange, the hottest write: ONE autocommitted statement (a CTE that
  reads the flag FOR SHARE and the session's scenario and inserts both messages only when the
  flag is off), one round trip. The patient's reply is made before it, from the profile of the
  session's scenario, which is cached per process (a session never changes scenario; a stale
  entry is noticed by the statement and the reply made again). With an ``announce`` hook the
  same statement runs inside a transaction, so what the hook does commits with it (the sim
  server announces after the commit instead: see :mod:`emrops.sim.events`);
- the scenarios' patient profiles are cached per process and engine (:data:`PROFILE_TTL_S`);
- SQL texts and value codecs live in :mod:`emrops.db.statements`, the run loop (checkout or a
  pinned connection, transaction mode, retry) in :mod:`emrops.db.pooled`.

No pre-ping per checkout: a connection found dropped (PostgreSQL restarted, backend terminated)
is replaced and the operation retried once on a fresh one, for reads and for writes that failed
before COMMIT was sent. A connection lost while the COMMIT was in flight (for the one-statement
exchange: while the statement was in flight) leaves the outcome unknown: that is a DatabaseError
(the sim server answers 503), never a retry that could store an exchange twice.

Every function raises :class:`emrops.errors.DatabaseError` (with the driver error, wrapped as
SQLAlchemy's DBAPIError, as its cause) when the database fails, :class:`NotFound` for a missing
session or scenario, and :class:`MaintenanceOn` for a write while the maintenance flag is on.

A write that adds messages to a session locks the session's row on PostgreSQL (see
:data:`emrops.db.statements.SESSION_LOCK`), so one session's message ids are handed out in
commit order and a reader paging "after the last id I saw" never skips a message that commits
later with a lower id (SQLite's ``BEGIN IMMEDIATE`` already serialises every write).

Writes check the maintenance flag inside their own write transaction (``FOR SHARE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so once ``emrops sim maintenance on`` has returned no
write commits any more: what a migration or restore copies afterwards is final.

The data layer imports nothing from the simulation: the patient's reply and the first vitals of a
session are passed in by the caller (``emrops.sim.patient.reply`` / ``sample_vitals``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from emrops.db.control import MAINTENANCE_KEY
from emrops.db.engine import begin_write, db_errors
from emrops.db.pooled import READ, STATEMENT, WRITE, Attempt, Mode
from emrops.db.pooled import pinned as pinned  # re-exported: the benchmark's clients hold one
from emrops.db.pooled import retried_operations as retried_operations  # (metrics)
from emrops.db.pooled import run as run_operation
from emrops.db.schema import audit_log, emrops_control
from emrops.db.statements import CODECS as _CODECS
from emrops.db.statements import PG_EXCHANGE as _PG_EXCHANGE
from emrops.db.statements import Codec as _Codec
from emrops.db.statements import Sql as _Sql
from emrops.db.types import utcnow
from emrops.errors import EmropsError

MAX_PAGE = 500
PROFILE_TTL_S = 30.0  # a profile edited under a running server is seen within this time
REPLY_GENERATOR = "emrops.sim.patient"  # stored in the reply's metadata
VITAL_COLUMNS = (
    "heart_rate",
    "systolic_bp",
    "diastolic_bp",
    "spo2",
    "respiratory_rate",
    "temperature",
)


class NotFound(EmropsError):
    """The session or scenario does not exist."""

    def __init__(self, kind: str, key: object):
        super().__init__(f"{kind} {key} not found")
        self.kind = kind
        self.key = key


class MaintenanceOn(EmropsError):
    """A write was refused because maintenance mode is on."""


@dataclass(frozen=True)
class ScenarioRow:
    id: int
    slug: str
    title: str
    description: str
    patient_profile: dict[str, Any]


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    scenario_id: int
    status: str
    started_at: datetime
    ended_at: datetime | None
    score: float | None
    user_email: str | None


@dataclass(frozen=True)
class MessageRow:
    id: int
    session_id: uuid.UUID
    role: str
    content: str
    created_at: datetime


@dataclass(frozen=True)
class Exchange:
    """A student message and the simulated patient's reply, stored in one transaction."""

    student: MessageRow
    patient: MessageRow


@dataclass(frozen=True)
class VitalsRow:
    id: int
    session_id: uuid.UUID
    heart_rate: int
    systolic_bp: int
    diastolic_bp: int
    spo2: int
    respiratory_rate: int
    temperature: float
    recorded_at: datetime


class Reply(Protocol):
    """What a reply generator returns (``emrops.sim.patient.PatientReply``)."""

    @property
    def text(self) -> str: ...

    @property
    def topic(self) -> str: ...


# (patient profile, student message) -> the patient's reply
ReplyFn = Callable[[Mapping[str, Any], str], Reply]
# (patient profile, seed) -> one vitals sample (keys: VITAL_COLUMNS)
VitalsFn = Callable[[Mapping[str, Any], int], Mapping[str, Any]]
# Called inside the write transaction of add_exchange after the inserts, with the DB-API cursor
# of that transaction (PostgreSQL NOTIFY): it is delivered only if the messages commit.
Announce = Callable[[Any, uuid.UUID, int], None]


# ---------------------------------------------------------------------------------------------
# Running one operation: emrops.db.pooled (checkout or pinned connection, one retry).

_Attempt = Attempt  # the name work functions are typed with


def _run(
    engine: Engine,
    work: Callable[[Any, _Codec, Attempt], Any],
    *,
    write: bool = False,
    mode: Mode | None = None,
) -> Any:
    """Run ``work(cursor, codec, attempt)`` on a connection: as reads, in a write transaction
    (``write``) or as one autocommitted write statement (``mode=STATEMENT``, PostgreSQL); see
    :func:`emrops.db.pooled.run` for the retry rule."""
    return run_operation(engine, work, _CODECS, mode or (WRITE if write else READ))


def _json_profile(value: Any) -> dict[str, Any]:
    profile = _Codec.read_js(value)
    return profile if isinstance(profile, dict) else {}


# ---------------------------------------------------------------------------------------------
# The scenarios' patient profiles, cached per process and engine.


class _Profiles:
    def __init__(self) -> None:
        self.by_id: dict[int, dict[str, Any]] = {}
        self.loaded_at = float("-inf")


_profile_cache: weakref.WeakKeyDictionary[Engine, _Profiles] = weakref.WeakKeyDictionary()
_profile_lock = threading.Lock()


def _profile(engine: Engine, cur: Any, sql: _Sql, scenario_id: int) -> dict[str, Any] | None:
    """The scenario's patient profile from the cache; reloaded (on ``cur``) when it is older than
    PROFILE_TTL_S or does not know the scenario. None: no such scenario."""
    cache = _profile_cache.get(engine)
    now = time.monotonic()
    if cache is not None and now - cache.loaded_at < PROFILE_TTL_S:
        found = cache.by_id.get(scenario_id)
        if found is not None:
            return found
    cur.execute(sql.profiles)
    fresh = _Profiles()
    fresh.by_id = {int(row[0]): _json_profile(row[1]) for row in cur.fetchall()}
    fresh.loaded_at = now
    with _profile_lock:
        _profile_cache[engine] = fresh
    return fresh.by_id.get(scenario_id)


def _cached_profile(engine: Engine, scenario_id: int) -> dict[str, Any] | None:
    """The scenario's patient profile from the cache, reloaded by a read when stale."""
    cache = _profile_cache.get(engine)
    if cache is not None and time.monotonic() - cache.loaded_at < PROFILE_TTL_S:
        found = cache.by_id.get(scenario_id)
        if found is not None:
            return found

    def work(cur: Any, codec: _Codec, _a: Attempt) -> dict[str, Any] | None:
        return _profile(engine, cur, codec.sql, scenario_id)

    result: dict[str, Any] | None = _run(engine, work)
    return result


# Each session's scenario (which never changes), per process and engine, so the patient's reply
# can be made before the one statement that stores the exchange. Bounded: cleared when full.
SESSION_CACHE_SIZE = 100_000
_session_scenarios: weakref.WeakKeyDictionary[Engine, dict[uuid.UUID, int]] = (
    weakref.WeakKeyDictionary()
)


def _session_cache(engine: Engine) -> dict[uuid.UUID, int]:
    cache = _session_scenarios.get(engine)
    if cache is None:
        with _profile_lock:
            cache = _session_scenarios.setdefault(engine, {})
    return cache


def _remember_session(engine: Engine, session_id: uuid.UUID, scenario_id: int) -> None:
    cache = _session_cache(engine)
    if len(cache) >= SESSION_CACHE_SIZE:
        cache.clear()
    cache[session_id] = scenario_id


def _refuse_if_maintenance(value: Any) -> None:
    value = _Codec.read_js(value)
    if isinstance(value, dict) and value.get("on"):
        raise MaintenanceOn(
            str(value.get("message") or "down for maintenance"),
            hint="wait until `emrops sim maintenance off`",
        )


def check_writable(conn: Connection) -> None:
    """Raise MaintenanceOn when the flag is on; call it inside a SQLAlchemy write transaction
    (tools that write through SQLAlchemy; the lean functions below check it themselves).

    On PostgreSQL the flag row is read ``FOR SHARE``: ``set_maintenance`` waits for writes in
    flight, and writes after it see the new value.
    """
    value = conn.execute(
        sa.select(emrops_control.c.value)
        .where(emrops_control.c.key == MAINTENANCE_KEY)
        .with_for_update(read=True)
    ).scalar()
    _refuse_if_maintenance(value)


# ---------------------------------------------------------------------------------------------
# Reads


def _scenario_row(row: Any) -> ScenarioRow:
    return ScenarioRow(row[0], row[1], row[2], row[3] or "", _json_profile(row[4]))


def list_scenarios(engine: Engine) -> list[ScenarioRow]:
    """Every scenario, by id."""

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> list[ScenarioRow]:
        cur.execute(codec.sql.scenarios)
        return [_scenario_row(row) for row in cur.fetchall()]

    result: list[ScenarioRow] = _run(engine, work, write=False)
    return result


def get_scenario(engine: Engine, scenario_id: int) -> ScenarioRow | None:
    def work(cur: Any, codec: _Codec, _a: _Attempt) -> ScenarioRow | None:
        cur.execute(codec.sql.scenario, (scenario_id,))
        row = cur.fetchone()
        return _scenario_row(row) if row is not None else None

    result: ScenarioRow | None = _run(engine, work, write=False)
    return result


def get_session(engine: Engine, session_id: uuid.UUID) -> SessionRow | None:
    def work(cur: Any, codec: _Codec, _a: _Attempt) -> SessionRow | None:
        cur.execute(codec.sql.session, (codec.uid(session_id),))
        row = cur.fetchone()
        if row is None:
            return None
        return SessionRow(
            codec.read_uid(row[0]),
            row[1],
            row[2],
            codec.read_when(row[3]),
            codec.read_when(row[4]) if row[4] is not None else None,
            row[5],
            row[6],
        )

    result: SessionRow | None = _run(engine, work, write=False)
    return result


_new = object.__new__


def _messages(codec: _Codec, session_id: uuid.UUID, rows: list[Any]) -> list[MessageRow]:
    """MessageRows for fetched (id, role, content, created_at) rows. Built by filling each
    instance's __dict__ rather than through the frozen dataclass's __init__ (five
    object.__setattr__ calls, 1.4 µs a row against 0.4 µs): a chat screen's last 50 messages
    are 50 rows per call. The rows are equal to, hash like and are as frozen as MessageRow(...)."""
    when = codec.read_when
    out = []
    for r in rows:
        at = r[3]
        if type(at) is not datetime or at.tzinfo is not UTC:  # psycopg's UTC datetimes as is
            at = when(at)
        row = _new(MessageRow)
        row.__dict__.update(id=r[0], session_id=session_id, role=r[1], content=r[2], created_at=at)
        out.append(row)
    return out


def list_messages(
    engine: Engine, session_id: uuid.UUID, *, after: int = 0, limit: int = 50
) -> list[MessageRow]:
    """A page of the session's messages with id > ``after``, oldest first (at most MAX_PAGE)."""
    limit = max(1, min(int(limit), MAX_PAGE))

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> list[MessageRow]:
        cur.execute(codec.sql.list_messages, (codec.uid(session_id), after, limit))
        return _messages(codec, session_id, cur.fetchall())

    result: list[MessageRow] = _run(engine, work, write=False)
    return result


def get_message(engine: Engine, message_id: int) -> MessageRow | None:
    """One message by id (a primary-key read: the benchmark's ``point-select`` calibration)."""

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> MessageRow | None:
        cur.execute(codec.sql.message, (message_id,))
        row = cur.fetchone()
        if row is None:
            return None
        return MessageRow(row[0], codec.read_uid(row[1]), row[2], row[3], codec.read_when(row[4]))

    result: MessageRow | None = _run(engine, work, write=False)
    return result


def last_messages(engine: Engine, session_id: uuid.UUID, limit: int = 50) -> list[MessageRow]:
    """The session's newest ``limit`` messages, oldest first (what a chat screen shows)."""
    limit = max(1, min(int(limit), MAX_PAGE))

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> list[MessageRow]:
        cur.execute(codec.sql.last_messages, (codec.uid(session_id), limit))
        rows = cur.fetchall()
        rows.reverse()
        return _messages(codec, session_id, rows)

    result: list[MessageRow] = _run(engine, work, write=False)
    return result


def _vitals(codec: _Codec, session_id: uuid.UUID, rows: list[Any]) -> list[VitalsRow]:
    when = codec.read_when
    return [
        VitalsRow(r[0], session_id, r[1], r[2], r[3], r[4], r[5], float(r[6]), when(r[7]))
        for r in rows
    ]


def list_vitals(engine: Engine, session_id: uuid.UUID, *, limit: int = 100) -> list[VitalsRow]:
    """The session's newest ``limit`` vitals readings, oldest first."""
    limit = max(1, min(int(limit), MAX_PAGE))

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> list[VitalsRow]:
        cur.execute(codec.sql.list_vitals, (codec.uid(session_id), limit))
        rows = cur.fetchall()
        rows.reverse()
        return _vitals(codec, session_id, rows)

    result: list[VitalsRow] = _run(engine, work, write=False)
    return result


def vitals_range(
    engine: Engine, session_id: uuid.UUID, start: datetime, end: datetime
) -> list[VitalsRow]:
    """The session's vitals recorded in [start, end), oldest first (ix_vitals_session_recorded)."""

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> list[VitalsRow]:
        cur.execute(
            codec.sql.vitals_range, (codec.uid(session_id), codec.when(start), codec.when(end))
        )
        return _vitals(codec, session_id, cur.fetchall())

    result: list[VitalsRow] = _run(engine, work, write=False)
    return result


# ---------------------------------------------------------------------------------------------
# Writes


def _gate(cur: Any, text: str, respect_maintenance: bool, key: Any) -> Any:
    """Read the maintenance flag (locked FOR SHARE on PostgreSQL) with one more value; refuse
    the write when maintenance is on. Returns the other value."""
    cur.execute(text, (MAINTENANCE_KEY if respect_maintenance else None, key))
    flag, other = cur.fetchone()
    if respect_maintenance:
        _refuse_if_maintenance(flag)
    return other


def create_session(
    engine: Engine,
    scenario_id: int,
    user_email: str | None = None,
    *,
    respect_maintenance: bool = True,
    initial_vitals: VitalsFn | None = None,
) -> SessionRow:
    """Start an encounter for ``scenario_id`` (and the user with ``user_email``, created when
    new), with an audit entry, all in one transaction. ``initial_vitals(profile, seed)`` (the
    sim passes ``emrops.sim.patient.sample_vitals``) gives a triage set of vitals stored with it.
    Raises NotFound for an unknown scenario, MaintenanceOn, DatabaseError."""
    session_id = uuid.uuid4()
    now = utcnow()
    email = user_email.strip().lower() if user_email else None

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> None:
        sql = codec.sql
        user_id = _gate(cur, sql.gate_create, respect_maintenance, email)
        profile = _profile(engine, cur, sql, scenario_id)
        if profile is None:
            raise NotFound("scenario", scenario_id)
        at = codec.when(now)
        if email and user_id is None:
            cur.execute(sql.insert_user, (email, email.split("@", 1)[0], at))
            user_id = cur.fetchone()[0]
        sid = codec.uid(session_id)
        cur.execute(sql.insert_session, (sid, scenario_id, user_id, at))
        if initial_vitals is not None:
            sample = initial_vitals(profile, session_id.int)
            cur.execute(sql.insert_vitals, (sid, *(sample[c] for c in VITAL_COLUMNS), at))
            cur.fetchall()  # RETURNING id: SQLite cannot commit with a statement unfinished
        cur.execute(
            sql.insert_audit,
            (
                at,
                (email or "anonymous")[:200],
                "session.start",
                str(session_id),
                codec.js({"scenario_id": scenario_id}),
            ),
        )

    _run(engine, work, write=True)
    _remember_session(engine, session_id, scenario_id)
    return SessionRow(session_id, scenario_id, "active", now, None, None, email)


def add_exchange(
    engine: Engine,
    session_id: uuid.UUID,
    content: str,
    *,
    reply: ReplyFn,
    announce: Announce | None = None,
    respect_maintenance: bool = True,
) -> Exchange:
    """Store a student message and the simulated patient's reply in ONE write transaction.

    ``reply(profile, content)`` makes the answer (the sim passes ``emrops.sim.patient.reply``);
    ``announce(cursor, session_id, last_id)`` runs inside the transaction after the inserts, so
    a PostgreSQL NOTIFY it issues is delivered only if the messages commit. Raises NotFound,
    MaintenanceOn, DatabaseError.
    """

    if engine.dialect.name == "postgresql":
        return _pg_exchange(engine, session_id, content, reply, announce, respect_maintenance)

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> Exchange:
        sql = codec.sql
        scenario_id = _gate(cur, sql.gate_session, respect_maintenance, codec.uid(session_id))
        if scenario_id is None:
            raise NotFound("session", session_id)
        profile = _profile(engine, cur, sql, scenario_id) or {}
        answer = reply(profile, content)
        now = utcnow()
        # The reply is a moment later than the question, so ordering by time agrees with ids.
        later = now + timedelta(microseconds=1)
        sid = codec.uid(session_id)
        text = answer.text
        meta = codec.js({"topic": answer.topic, "generator": REPLY_GENERATOR})
        cur.execute(
            sql.insert_exchange,
            (
                *(sid, content, codec.when(now), len(content.split()), "null"),
                *(sid, text, codec.when(later), len(text.split()), meta),
            ),
        )
        ids = {role: int(new_id) for new_id, role in cur.fetchall()}
        if announce is not None:
            announce(cur, session_id, ids["patient"])
        return Exchange(
            MessageRow(ids["student"], session_id, "student", content, now),
            MessageRow(ids["patient"], session_id, "patient", text, later),
        )

    result: Exchange = _run(engine, work, write=True)
    return result


def _pg_exchange(
    engine: Engine,
    session_id: uuid.UUID,
    content: str,
    reply: ReplyFn,
    announce: Announce | None,
    respect_maintenance: bool,
) -> Exchange:
    """add_exchange on PostgreSQL: one statement (_PG_EXCHANGE), autocommitted, or inside a
    transaction when ``announce`` must run in it. The reply is made first, from the profile of
    the session's scenario (cached; a session not seen yet costs one more run of the statement
    that inserts nothing and tells the scenario)."""
    key = MAINTENANCE_KEY if respect_maintenance else None
    scenarios = _session_cache(engine)
    expected = scenarios.get(session_id)
    now = utcnow()
    later = now + timedelta(microseconds=1)  # the reply is later: ordering by time agrees with ids
    for _ in range(3):  # learn the scenario, store; once more if the cache was stale
        if expected is None:
            flag, expected = _run(engine, _exchange_work(key, session_id, (None,) * 11))[:2]
            _exchange_refused(engine, session_id, flag, expected)
            assert expected is not None
            _remember_session(engine, session_id, expected)
        answer = reply(_cached_profile(engine, expected) or {}, content)
        text = answer.text
        meta = json.dumps({"topic": answer.topic, "generator": REPLY_GENERATOR})
        values = (
            *(session_id, content, now, len(content.split()), "null"),
            *(session_id, text, later, len(text.split()), meta),
            expected,
        )
        mode = STATEMENT if announce is None else WRITE
        flag, scenario_id, student_id, patient_id = _run(
            engine, _exchange_work(key, session_id, values, announce), mode=mode
        )
        if student_id is not None:
            return Exchange(
                MessageRow(int(student_id), session_id, "student", content, now),
                MessageRow(int(patient_id), session_id, "patient", text, later),
            )
        _exchange_refused(engine, session_id, flag, scenario_id)
        if scenario_id == expected:  # the SQL read the flag as on where Python did not
            raise MaintenanceOn("down for maintenance", hint="wait until maintenance is off")
        expected = scenario_id
        _remember_session(engine, session_id, scenario_id)
    raise AssertionError("the session's scenario kept changing")  # pragma: no cover


def _exchange_work(
    key: str | None,
    session_id: uuid.UUID,
    values: tuple[Any, ...],
    announce: Announce | None = None,
) -> Callable[[Any, _Codec, Attempt], tuple[Any, Any, Any, Any]]:
    def work(cur: Any, _codec: _Codec, _a: Attempt) -> tuple[Any, Any, Any, Any]:
        cur.execute(_PG_EXCHANGE, (key, session_id, *values), prepare=True)
        row = cur.fetchone()
        if announce is not None and row[3] is not None:
            announce(cur, session_id, int(row[3]))
        return row  # type: ignore[no-any-return]

    return work


def _exchange_refused(engine: Engine, session_id: uuid.UUID, flag: Any, scenario_id: Any) -> None:
    """Raise what the old path raised first: MaintenanceOn, then NotFound."""
    _refuse_if_maintenance(flag)
    if scenario_id is None:
        _session_cache(engine).pop(session_id, None)
        raise NotFound("session", session_id)


def add_message(
    engine: Engine,
    session_id: uuid.UUID,
    content: str,
    role: str = "student",
    *,
    respect_maintenance: bool = True,
) -> MessageRow:
    """Store one message without a reply (what a tool or the benchmark's ``write.message`` does).
    Raises NotFound, MaintenanceOn, DatabaseError."""

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> MessageRow:
        sql = codec.sql
        sid = codec.uid(session_id)
        if _gate(cur, sql.gate_session, respect_maintenance, sid) is None:
            raise NotFound("session", session_id)
        now = utcnow()
        cur.execute(
            sql.insert_message, (sid, role, content, codec.when(now), len(content.split()), "null")
        )
        return MessageRow(int(cur.fetchone()[0]), session_id, role, content, now)

    result: MessageRow = _run(engine, work, write=True)
    return result


def add_vitals(
    engine: Engine,
    session_id: uuid.UUID,
    sample: Mapping[str, float],
    *,
    recorded_at: datetime | None = None,
    respect_maintenance: bool = True,
) -> VitalsRow:
    """Store one set of vitals (keys: VITAL_COLUMNS). Raises NotFound for an unknown session,
    MaintenanceOn, DatabaseError (also for values outside the table's CHECK ranges)."""
    values = [sample[name] for name in VITAL_COLUMNS]
    when = recorded_at or utcnow()

    def work(cur: Any, codec: _Codec, _a: _Attempt) -> int:
        sql = codec.sql
        sid = codec.uid(session_id)
        if _gate(cur, sql.gate_session, respect_maintenance, sid) is None:
            raise NotFound("session", session_id)
        cur.execute(sql.insert_vitals, (sid, *values, codec.when(when)))
        return int(cur.fetchone()[0])

    new_id: int = _run(engine, work, write=True)
    hr, sys_bp, dia_bp, spo2, rr, temp = values
    return VitalsRow(new_id, session_id, hr, sys_bp, dia_bp, spo2, rr, temp, when)  # type: ignore[arg-type]


def _audit(
    conn: Connection,
    *,
    actor: str,
    action: str,
    target: str | None,
    details: Mapping[str, Any] | None,
    at: datetime | None = None,
) -> int:
    return int(
        conn.execute(
            audit_log.insert()
            .values(
                at=at or utcnow(),
                actor=actor[:200],
                action=action[:100],
                target=target[:200] if target else None,
                details=dict(details) if details is not None else None,
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    )


def add_audit(
    engine: Engine,
    actor: str,
    action: str,
    target: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append an audit_log entry; returns its id (not a hot path: plain SQLAlchemy)."""
    with db_errors(engine.url), begin_write(engine) as conn:
        return _audit(conn, actor=actor, action=action, target=target, details=details)
