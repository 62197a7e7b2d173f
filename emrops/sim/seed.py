"""Fast, deterministic bulk generator of realistic EMRsim data (``emrops sim seed``).

``seed_database`` writes users, sessions, messages and vitals in ONE transaction, so a
failed seed leaves nothing behind. It bypasses SQLAlchemy's statement layer for speed:

- SQLite: the pooled DBAPI connection, ``BEGIN IMMEDIATE``, ``executemany`` of multi-row
  INSERTs, ``synchronous=OFF`` and a bigger page cache for the duration (both restored
  afterwards; ``journal_mode`` is never touched). Values are pre-formatted exactly as
  SQLAlchemy stores them (``sa.Uuid`` -> 32 hex digits, ``DateTime`` -> naive UTC text
  ``YYYY-MM-DD HH:MM:SS.ffffff``), so Core reads them back as ``uuid.UUID`` and aware UTC.
- PostgreSQL: psycopg 3 ``COPY ... FROM STDIN`` per batch and table, the same naive UTC text
  under ``SET LOCAL timezone = 'UTC'``. A thread generates the next batch while the server
  ingests the current one (the server's per-row FK checks dominate the cost there).

Determinism: the content is a pure function of ``seed``, the scenarios present and the number
of sessions already in the database. Two fresh databases seeded with the same seed hold the
same rows; seeding an existing database again appends new sessions (their random stream is
derived from the seed and the existing session count, so ids never repeat). Timestamps are
spread over the 90 days before a base time (default the fixed :data:`SEED_EPOCH`; `sim seed`
passes now unless --base-time is given), not the clock at each row, for the same reason.
Session ids are time-ordered UUIDv7 values: the (session_id, id) message index then grows at
its right edge instead of splitting pages all over the tree.
"""

from __future__ import annotations

import math
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain
from queue import Full, Queue
from typing import Any

import sqlalchemy as sa
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Engine

from emrops.db.engine import db_errors, translate
from emrops.db.schema import scenarios
from emrops.errors import UsageError
from emrops.sim.phrases import DEFAULT_VITALS, FIRST_NAMES, LAST_NAMES, MIDDLE_TOPICS, phrasebook

Progress = Callable[[int, int], None]

SEED_EPOCH = datetime(2026, 11, 1, tzinfo=UTC)  # seeded sessions start in the 90 days before it
WINDOW_DAYS = 90
EMAIL_DOMAIN = "students.emrsim.example"
SESSIONS_PER_USER = 10
ANONYMOUS_SHARE = 0.05  # sessions without a user (guest encounters)
MESSAGES_PER_BATCH = 50_000  # rows buffered per executemany / COPY round
SQLITE_CACHE_KIB = 262_144  # page cache for the seeding connection: 256 MiB


@dataclass(frozen=True)
class SeedResult:
    """What a seed wrote: row counts, the time it took and the engine ('sqlite'/'postgresql')."""

    users: int
    sessions: int
    messages: int
    vitals: int
    seconds: float
    engine: str


@dataclass
class _Batch:
    sessions: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)
    vitals: list[tuple[Any, ...]] = field(default_factory=list)


def _uuid7(ms: int, rng: random.Random) -> str:
    """A UUIDv7 (time-ordered) as 32 hex digits, the way sa.Uuid stores it on SQLite."""
    rand_a, rand_b = rng.getrandbits(12), rng.getrandbits(62)
    return f"{(ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b:032x}"


def _clamp(value: float, low: float, high: float) -> float:
    return low if value < low else high if value > high else value


@dataclass(frozen=True)
class _Clock:
    """The base time every generated timestamp (and UUIDv7) is an offset from."""

    naive: datetime  # naive UTC
    ms: int

    @classmethod
    def at(cls, base: datetime) -> _Clock:
        base = base.astimezone(UTC) if base.tzinfo else base.replace(tzinfo=UTC)
        return cls(base.replace(tzinfo=None), int(base.timestamp() * 1000))

    def ts(self, offset_us: int) -> str:
        """Naive UTC text, microseconds always present (what SQLAlchemy's DateTime writes)."""
        return (self.naive + timedelta(microseconds=offset_us)).isoformat(" ", "microseconds")


class _Generator:
    """Produces batches of rows; all randomness comes from one random.Random."""

    def __init__(
        self,
        rng: random.Random,
        scenario_rows: list[tuple[int, dict[str, Any]]],
        user_ids: list[int],
        clock: _Clock,
    ) -> None:
        self.rng = rng
        self.clock = clock
        self.scenarios = [
            (sid, phrasebook(p), p.get("vitals_baseline") or DEFAULT_VITALS)
            for sid, p in scenario_rows
        ]
        self.user_ids = user_ids

    def batches(
        self, sessions: int, mps: int, per_batch: int
    ) -> Generator[tuple[int, _Batch], None, None]:
        rng = self.rng
        window_us = WINDOW_DAYS * 86_400_000_000
        # Sorted start offsets (negative: before the epoch) make the UUIDv7 ids ascend.
        starts = sorted(-int(rng.random() * window_us) for _ in range(sessions))
        batch = _Batch()
        for n, start in enumerate(starts, 1):
            self._session(batch, start, mps)
            if n % per_batch == 0 or n == sessions:
                yield n, batch
                batch = _Batch()

    def _session(self, batch: _Batch, start_us: int, mps: int) -> None:
        rng = self.rng
        rand = rng.random
        scenario_id, book, base = self.scenarios[int(rand() * len(self.scenarios))]
        sid = _uuid7(self.clock.ms + start_us // 1000, rng)
        user = None if rand() < ANONYMOUS_SHARE else self.user_ids[int(rand() * len(self.user_ids))]
        middle = list(MIDDLE_TOPICS)
        rng.shuffle(middle)
        # greeting, complaint, the history in a random order, exam, plan; then the history again.
        plan = [book["greeting"], book["complaint"]]
        loop = [book[t] for t in (*middle, "exam", "plan")]
        pairs = (mps + 1) // 2
        while len(plan) < pairs:
            plan.extend(loop)
        append = batch.messages.append
        epoch, td = self.clock.naive, timedelta
        t = start_us + 5_000_000 + int(rand() * 55_000_000)
        for k in range(pairs):
            student, n_student, patient, n_patient, meta = plan[k]
            text, tokens = student[int(rand() * n_student)]
            append(
                (
                    sid,
                    "student",
                    text,
                    (epoch + td(microseconds=t)).isoformat(" ", "microseconds"),
                    tokens,
                    None,
                )
            )
            t += 1_000_000 + int(rand() * 2_000_000)  # the patient answers within seconds
            if 2 * k + 1 < mps:
                text, tokens = patient[int(rand() * n_patient)]
                append(
                    (
                        sid,
                        "patient",
                        text,
                        (epoch + td(microseconds=t)).isoformat(" ", "microseconds"),
                        tokens,
                        f"{meta}{300 + int(rand() * 1500)}}}",
                    )
                )
                t += 8_000_000 + int(rand() * 80_000_000)  # the student reads and types
        x = rand()
        status = "completed" if x < 0.75 else "abandoned" if x < 0.87 else "active"
        ended = score = None
        if status != "active":
            t += 30_000_000 + int(rand() * 300_000_000)
            ended = self.clock.ts(t)
            if status == "completed":
                score = round(_clamp(rng.triangular(35, 100, 80), 0, 100), 1)
        batch.sessions.append(
            (sid, scenario_id, user, status, self.clock.ts(start_us), ended, score)
        )
        self._vitals(batch, sid, base, start_us, t)

    def _vitals(self, batch: _Batch, sid: str, base: dict[str, Any], start: int, end: int) -> None:
        rand = self.rng.random
        samples = 3 + int(rand() * 4)
        step = max((end - start) // samples, 1_000_000)
        hr0, sbp0, dbp0 = (
            base.get("heart_rate", 80),
            base.get("systolic_bp", 125),
            base.get("diastolic_bp", 80),
        )
        spo2_0, rr0, temp0 = (
            base.get("spo2", 97),
            base.get("respiratory_rate", 16),
            base.get("temperature", 36.9),
        )
        for k in range(samples):
            # (rand() - rand()) is triangular noise in (-1, 1): cheaper than gauss, as plausible.
            hr = int(_clamp(round(hr0 + (rand() - rand()) * 8), 30, 220))
            sbp = int(_clamp(round(sbp0 + (rand() - rand()) * 12), 60, 250))
            dbp = int(_clamp(round(dbp0 + (rand() - rand()) * 8), 30, min(150, sbp - 10)))
            spo2 = int(_clamp(round(spo2_0 + (rand() - rand()) * 2), 70, 100))
            rr = int(_clamp(round(rr0 + (rand() - rand()) * 3), 6, 60))
            temp = round(_clamp(temp0 + (rand() - rand()) * 0.3, 33.0, 43.0), 1)
            at = self.clock.ts(start + k * step + int(rand() * 1_000_000))
            batch.vitals.append((sid, hr, sbp, dbp, spo2, rr, temp, at))


def _users(
    rng: random.Random, ids: list[int], taken: set[str], clock: _Clock
) -> list[tuple[Any, ...]]:
    window_start = -WINDOW_DAYS * 86_400_000_000
    rows = []
    for uid in ids:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}.{uid}@{EMAIL_DOMAIN}".lower()
        n = 1
        while email in taken:  # only if someone else already used our pattern
            n += 1
            email = f"{first}.{last}.{uid}.{n}@{EMAIL_DOMAIN}".lower()
        taken.add(email)
        role = "instructor" if rng.random() < 0.04 else "student"
        created = clock.ts(window_start - int(rng.random() * 365 * 86_400_000_000))
        rows.append((uid, email, f"{first} {last}", role, created))
    return rows


_COLUMNS = {
    "users": ("id", "email", "display_name", "role", "created_at"),
    "sessions": ("id", "scenario_id", "user_id", "status", "started_at", "ended_at", "score"),
    "messages": ("session_id", "role", "content", "created_at", "tokens", "metadata"),
    "vitals": (
        "session_id",
        "heart_rate",
        "systolic_bp",
        "diastolic_bp",
        "spo2",
        "respiratory_rate",
        "temperature",
        "recorded_at",
    ),
}


def seed_database(
    engine: Engine,
    *,
    sessions: int,
    messages_per_session: int = 50,
    seed: int = 1,
    progress: Progress | None = None,
    base_time: datetime = SEED_EPOCH,
    append: bool = True,
) -> SeedResult:
    """Append ``sessions`` generated sessions (with users, messages, vitals) in one transaction.

    Needs the schema and at least one scenario (``emrops sim init-db``). Raises UsageError for
    bad sizes or a database without scenarios, DatabaseError for any database failure (then
    nothing was written). ``progress(done, total)`` is called after each batch of sessions.
    Sessions start in the 90 days before ``base_time``; ids and times are a pure function of
    the seed, the base time and what the database holds. With ``append=False`` a database
    that already has sessions is refused (UsageError, exit 2) instead of appended to.
    """
    if sessions < 1:
        raise UsageError(f"--sessions must be at least 1, got {sessions}")
    if messages_per_session < 0:
        raise UsageError(f"--messages-per-session must be 0 or more, got {messages_per_session}")
    with db_errors(engine.url), engine.connect() as conn:
        query = sa.select(scenarios.c.id, scenarios.c.patient_profile).order_by(scenarios.c.id)
        scenario_rows = [(int(r.id), dict(r.patient_profile)) for r in conn.execute(query)]
    if not scenario_rows:
        raise UsageError(
            "the database has no scenarios to seed sessions for",
            hint="run `emrops sim init-db` first",
        )
    started = time.perf_counter()
    writer_class = _SqliteWriter if engine.dialect.name == "sqlite" else _PostgresWriter
    dbapi_error = engine.dialect.loaded_dbapi.Error
    with db_errors(engine.url):
        raw = engine.raw_connection()
    try:
        writer = writer_class(raw.driver_connection)
        try:
            writer.begin()
            counts = _seed(
                writer,
                scenario_rows,
                sessions,
                messages_per_session,
                seed,
                progress,
                _Clock.at(base_time),
                append,
            )
            writer.commit()
        except BaseException:
            writer.rollback()
            raise
        finally:
            if not writer.restore():
                raw.invalidate()  # settings not restored: never hand this connection out again
    except dbapi_error as exc:  # driver errors from the raw connection
        raise translate(exc, engine.url) from exc
    finally:
        raw.close()
    users, messages, vitals = counts
    return SeedResult(
        users=users,
        sessions=sessions,
        messages=messages,
        vitals=vitals,
        seconds=round(time.perf_counter() - started, 3),
        engine=engine.dialect.name,
    )


def _seed(
    writer: _SqliteWriter | _PostgresWriter,
    scenario_rows: list[tuple[int, dict[str, Any]]],
    sessions: int,
    mps: int,
    seed: int,
    progress: Progress | None,
    clock: _Clock,
    append: bool,
) -> tuple[int, int, int]:
    """Generate and write everything inside the open transaction; (users, messages, vitals)."""
    existing = writer.scalar("SELECT count(*) FROM sessions")
    if existing and not append:
        raise UsageError(
            f"the database already holds {existing} session(s)",
            hint="pass --append to add more (with a stream derived from the seed and the "
            "count), or seed a fresh database",
        )
    # A fresh database gets exactly Random(seed); appending derives a new, distinct stream.
    rng = random.Random(seed if existing == 0 else f"{seed}/{existing}")
    user_ids = writer.new_user_ids(max(1, math.ceil(sessions / SESSIONS_PER_USER)))
    taken = set(writer.column(f"SELECT email FROM users WHERE email LIKE '%@{EMAIL_DOMAIN}'"))
    writer.write("users", _users(rng, user_ids, taken, clock))
    per_batch = max(1, min(sessions, MESSAGES_PER_BATCH // max(mps, 1)))
    batches = _Generator(rng, scenario_rows, user_ids, clock).batches(sessions, mps, per_batch)
    if writer.overlap:
        batches = _prefetched(batches)
    messages = vitals = 0
    if progress:
        progress(0, sessions)
    try:
        for done, batch in batches:
            writer.write("sessions", batch.sessions)
            writer.write("messages", batch.messages)
            writer.write("vitals", batch.vitals)
            messages += len(batch.messages)
            vitals += len(batch.vitals)
            if progress:
                progress(done, sessions)
    finally:
        batches.close()  # stops the prefetch thread at once when writing failed
    return len(user_ids), messages, vitals


def _prefetched(items: Generator[Any, None, None], depth: int = 2) -> Generator[Any, None, None]:
    """Run ``items`` in a thread, ``depth`` ahead of the consumer.

    For PostgreSQL: the server checks FKs and maintains indexes in its own process while this
    thread generates the next batch (the COPY loop waits on the socket without the GIL).
    Not for SQLite: its writes run in this process and would only compete for the GIL.
    """
    queue: Queue[tuple[str, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                queue.put(message, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("end", None))
        except BaseException as exc:  # handed over to the consumer and raised there
            put(("error", exc))

    thread = threading.Thread(target=produce, name="emrops-seed-generator", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


class _SqliteWriter:
    """Multi-row INSERTs on the sqlite3 connection (the engine set isolation_level=None).

    Many rows per statement, not one: SQLite re-runs per-statement work (such as the
    ephemeral table behind ``role IN (...)`` CHECKs) on every execution, so 100 rows per
    statement roughly halve the cost of the messages insert.
    """

    overlap = False

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.saved: list[tuple[str, Any]] = []

    def begin(self) -> None:
        for pragma, value in (("synchronous", "OFF"), ("cache_size", -SQLITE_CACHE_KIB)):
            self.saved.append((pragma, self.scalar(f"PRAGMA {pragma}")))
            self.conn.execute(f"PRAGMA {pragma} = {value}")
        self.conn.execute("BEGIN IMMEDIATE")

    def scalar(self, sql: str) -> Any:
        return self.conn.execute(sql).fetchone()[0]

    def column(self, sql: str) -> list[Any]:
        return [row[0] for row in self.conn.execute(sql)]

    def new_user_ids(self, n: int) -> list[int]:
        top = self.scalar("SELECT coalesce(max(id), 0) FROM users")  # we hold the write lock
        return list(range(top + 1, top + 1 + n))

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = _COLUMNS[table]
        width = len(columns)
        per_statement = min(100, 999 // width)  # 999: the bound-parameter limit of old SQLite

        def insert(count: int) -> str:
            values = ", ".join(["(" + ", ".join("?" * width) + ")"] * count)
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"

        full = len(rows) - len(rows) % per_statement
        if full:
            flat = list(chain.from_iterable(rows[:full]))
            step = per_statement * width
            self.conn.executemany(
                insert(per_statement), [flat[i : i + step] for i in range(0, len(flat), step)]
            )
        if full < len(rows):
            self.conn.execute(insert(len(rows) - full), list(chain.from_iterable(rows[full:])))

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def restore(self) -> bool:
        """Put the connection's settings back; False when that failed."""
        try:
            for pragma, value in self.saved:
                self.conn.execute(f"PRAGMA {pragma} = {value}")
        except sqlite3.Error:
            return False
        return True


class _PostgresWriter:
    """COPY FROM STDIN on the psycopg 3 connection, all in the one transaction psycopg opens."""

    overlap = True

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def begin(self) -> None:
        if self.conn.info.transaction_status != TransactionStatus.IDLE:
            self.conn.rollback()  # a pooled connection must not carry anything into our seed
        # The generator writes naive UTC text; make sure the server reads it as UTC.
        self.conn.execute("SET LOCAL timezone = 'UTC'")

    def scalar(self, sql: str) -> Any:
        return self.conn.execute(sql).fetchone()[0]

    def column(self, sql: str) -> list[Any]:
        return [row[0] for row in self.conn.execute(sql)]  # no params: '%' is no placeholder

    def new_user_ids(self, n: int) -> list[int]:
        # Reserve ids from the sequence: safe against concurrent writers, no setval needed.
        cur = self.conn.execute(
            "SELECT nextval(pg_get_serial_sequence('users', 'id')) FROM generate_series(1, %s)",
            (n,),
        )
        return sorted(int(row[0]) for row in cur)

    def write(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        columns = ", ".join(_COLUMNS[table])
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            write_row = copy.write_row
            for row in rows:
                write_row(row)

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def restore(self) -> bool:
        return True  # SET LOCAL ended with the transaction
