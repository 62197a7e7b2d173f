"""The benchmark's workloads: EMRsim's own operations through :mod:`emrops.db.queries`.

Each workload is a function ``step(ctx) -> list[(op name, callable)]``: one iteration of a
client, made of one or more operations that the runner times one by one.

* ``chat``  = ``chat.exchange`` (student message + patient reply, one write transaction, exactly
  what ``POST /api/sessions/{id}/messages`` does) then ``chat.last50`` (the chat screen's last 50
  messages).
* ``read``  = ``read.history`` (a 50-message history page after a random message) or
  ``read.vitals`` (a session's vitals over a one-hour range), half each.
* ``write`` = ``write.message`` (one message insert) or ``write.vitals`` (one vitals sample),
  half each.
* ``mixed`` = a ``read`` operation 80 % of the time, a ``write`` operation 20 %.
* ``point-select`` = ``point.select``: one message read by its primary key, a random id among
  the seeded messages: the calibration workload, the same shape as ``pgbench -S`` (one indexed
  primary-key read per transaction), to compare the harness's overhead with pgbench's.

Each client holds one connection for the cell (:meth:`Client.connection`), like a pgbench client.
Sessions are drawn uniformly from the seeded ones, with a per-client random generator so runs
are repeatable. Every operation is a function of :mod:`emrops.db.queries`, the data layer the
sim server uses (``chat.exchange`` passes the sim's reply generator, as the server does).
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from emrops.db import queries
from emrops.db.engine import db_errors
from emrops.db.schema import messages, sessions
from emrops.sim import patient

WORKLOADS = ("chat", "read", "write", "mixed", "point-select")
OPS = {
    "point-select": ("point.select",),
    "chat": ("chat.exchange", "chat.last50"),
    "read": ("read.history", "read.vitals"),
    "write": ("write.message", "write.vitals"),
    "mixed": ("read.history", "read.vitals", "write.message", "write.vitals"),
}
QUESTIONS = (
    "What brings you in today?",
    "When did the pain start?",
    "Do you have any allergies?",
    "Are you taking any medication?",
    "Does anything make it better or worse?",
    "Have you had a fever?",
    "Any shortness of breath?",
    "Can you rate the pain from one to ten?",
)
VITALS_RANGE = timedelta(hours=1)


@dataclass(frozen=True)
class SessionInfo:
    """What a workload needs to know about one seeded session."""

    id: uuid.UUID
    first_message_id: int
    last_message_id: int
    started_at: datetime
    profile: dict[str, Any]


@dataclass(frozen=True)
class Dataset:
    """The seeded sessions that operations pick from."""

    sessions: tuple[SessionInfo, ...]


def load_dataset(engine: Engine) -> Dataset:
    """Read the seeded sessions' ids, message id ranges and start times (one query each)."""
    from emrops.db.schema import scenarios

    with db_errors(engine.url), engine.connect() as conn:
        ranges = {
            row[0]: (int(row[1]), int(row[2]))
            for row in conn.execute(
                sa.select(
                    messages.c.session_id, sa.func.min(messages.c.id), sa.func.max(messages.c.id)
                ).group_by(messages.c.session_id)
            )
        }
        rows = conn.execute(
            sa.select(sessions.c.id, sessions.c.started_at, scenarios.c.patient_profile)
            .select_from(sessions.join(scenarios, scenarios.c.id == sessions.c.scenario_id))
            .order_by(sessions.c.id)
        ).all()
    infos = tuple(
        SessionInfo(
            row[0],
            *ranges.get(row[0], (0, 0)),
            row[1],
            row[2] if isinstance(row[2], dict) else {},
        )
        for row in rows
    )
    return Dataset(infos)


def insert_message(engine: Engine, session_id: uuid.UUID, content: str, role: str = "student"):
    """Insert one message (a write without the patient reply); returns its id."""
    return queries.add_message(engine, session_id, content, role).id


def vitals_range(engine: Engine, session_id: uuid.UUID, start: datetime, end: datetime):
    """A session's vitals recorded in [start, end), oldest first (ix_vitals_session_recorded)."""
    return queries.vitals_range(engine, session_id, start, end)


Op = tuple[str, Callable[[], Any]]


class Client:
    """One client's operation generator (owns its random generator; not shared)."""

    def __init__(self, engine: Engine, dataset: Dataset, workload: str, seed: int) -> None:
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}")
        if not dataset.sessions:
            raise ValueError("the dataset has no sessions")
        self.engine = engine
        self.dataset = dataset
        self.workload = workload
        self.rng = random.Random(seed)
        self.first_id = min(s.first_message_id for s in dataset.sessions)
        self.last_id = max(s.last_message_id for s in dataset.sessions)

    def connection(self) -> contextlib.AbstractContextManager[None]:
        """Hold one pooled connection for this client's thread for the whole cell, as pgbench
        holds one per client: the SQL and the retry on a dropped connection are the data
        layer's, only the pool's checkout and reset per operation are left out."""
        return queries.pinned(self.engine)

    def _session(self) -> SessionInfo:
        return self.rng.choice(self.dataset.sessions)

    def step(self) -> list[Op]:
        """The operations of one iteration, in order."""
        if self.workload == "chat":
            return self._chat()
        if self.workload == "read":
            return [self._read()]
        if self.workload == "write":
            return [self._write()]
        if self.workload == "point-select":
            message_id = self.rng.randint(self.first_id, max(self.first_id, self.last_id))
            engine = self.engine
            return [("point.select", lambda: queries.get_message(engine, message_id))]
        return [self._read() if self.rng.random() < 0.8 else self._write()]

    def _chat(self) -> list[Op]:
        s = self._session()
        question = self.rng.choice(QUESTIONS)
        engine = self.engine
        return [
            (
                "chat.exchange",
                lambda: queries.add_exchange(engine, s.id, question, reply=patient.reply),
            ),
            ("chat.last50", lambda: queries.last_messages(engine, s.id, 50)),
        ]

    def _read(self) -> Op:
        s = self._session()
        engine = self.engine
        if self.rng.random() < 0.5:
            after = self.rng.randint(s.first_message_id, max(s.first_message_id, s.last_message_id))
            return ("read.history", lambda: queries.list_messages(engine, s.id, after=after - 1))
        start = s.started_at + timedelta(minutes=self.rng.randint(0, 30))
        return ("read.vitals", lambda: vitals_range(engine, s.id, start, start + VITALS_RANGE))

    def _write(self) -> Op:
        s = self._session()
        engine = self.engine
        if self.rng.random() < 0.5:
            text = self.rng.choice(QUESTIONS)
            return ("write.message", lambda: insert_message(engine, s.id, text))
        sample = patient.sample_vitals(s.profile, seed=self.rng.getrandbits(32))
        return ("write.vitals", lambda: queries.add_vitals(engine, s.id, sample))
