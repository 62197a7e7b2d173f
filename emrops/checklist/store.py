"""Run files: one JSON document per checklist run, rewritten atomically after every item.

``<state_dir>/checklists/runs/<run_id>.json`` holds the whole state (so an interrupted run
resumes from it); ``<run_id>.events.jsonl`` beside it is the append-only audit trail of
every change. A file lock per run stops two processes from driving the same run.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import filelock

from emrops import atomic, secrets
from emrops.errors import Busy, EmropsError, UsageError
from emrops.logs import iso_utc
from emrops.typedjson import check_fields

RUN_FORMAT = "emrops.checklist-run/1"
TERMINAL = frozenset({"done", "skipped", "n/a"})
STATUSES = ("pending", "done", "failed", "skipped", "n/a")
RUN_STATUSES = ("in-progress", "paused", "interrupted", "failed", "incomplete", "complete")
# What an item's recorded check holds (CheckResult and when it ran). Reports read these
# fields: a hand-edited `"output": 5` ended `checklist report` in "unexpected AttributeError".
_CHECK_FIELDS: dict[str, tuple[type, ...]] = {
    "command": (str,),
    "exit_code": (int, type(None)),
    "expected": (list,),
    "passed": (bool,),
    "timed_out": (bool,),
    "duration_s": (int, float),
    "output": (str,),
    "truncated": (bool,),
    "error": (str, type(None)),
    "at": (str,),
}


def _check_record(check: dict[str, Any] | None, where: str) -> None:
    """ValueError naming the first field of an item's check record with a wrong type."""
    for key, value in (check or {}).items():
        kinds = _CHECK_FIELDS.get(key)
        if kinds is None:
            continue
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise ValueError(f"{where}: check {key!r} is {type(value).__name__}, not {names}")


def actor() -> dict[str, str]:
    """Who is acting: the CI user when there is one, else the login name; and the host."""
    user = os.environ.get("GITHUB_ACTOR") or os.environ.get("BUILD_REQUESTEDFOR") or _login()
    return {"user": user, "host": socket.gethostname()}


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        return f"uid {os.getuid()}"


@dataclass
class ItemRecord:
    """The state of one item in one run."""

    id: str
    section: str
    title: str
    status: str = "pending"
    method: str | None = None  # auto, manual, or auto+manual
    answer: str | None = None  # what the person answered: done, fail, skip (auto: the check)
    reason: str | None = None  # why skipped/failed/pending
    evidence: dict[str, str] = field(default_factory=dict)
    check: dict[str, Any] | None = None
    by: dict[str, str] | None = None
    at: str | None = None
    attempts: int = 0
    definition: str | None = None  # sha256 of the item as written when this run began


_ITEM_FIELDS = fields(ItemRecord)


@dataclass
class Run:
    run_id: str
    checklist_id: str
    checklist_title: str
    checklist_version: int
    checklist_path: str
    sha256: str
    env: str | None
    mode: str
    status: str
    started_at: str
    updated_at: str
    started_by: dict[str, str]
    items: list[ItemRecord]
    finished_at: str | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)

    def record(self, item_id: str) -> ItemRecord:
        for rec in self.items:
            if rec.id == item_id:
                return rec
        raise KeyError(item_id)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for rec in self.items:
            out[rec.status] = out.get(rec.status, 0) + 1
        return out

    def ids(self, status: str) -> list[str]:
        return [rec.id for rec in self.items if rec.status == status]

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "checklist": self.checklist_id,
            "env": self.env,
            "status": self.status,
            "started_at": self.started_at,
            "started_by": self.started_by,
            "counts": self.counts(),
        }

    def to_dict(self) -> dict[str, Any]:
        # not asdict(): its deep copy of every record, at every save, made a run of a
        # checklist with thousands of items quadratic in CPU (3000 items: over 5 minutes)
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["items"] = [{f.name: getattr(rec, f.name) for f in _ITEM_FIELDS} for rec in self.items]
        return {"format": RUN_FORMAT, **data, "counts": self.counts()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Run:
        """The run a run file holds; ValueError naming the first field of a wrong type or
        value (a hand-edited or damaged file must not fail later, while it is rendered)."""
        data = {k: v for k, v in data.items() if k not in ("format", "counts")}
        check_fields(cls, data, "run")
        if data["status"] not in RUN_STATUSES:
            raise ValueError(f"run has status {data['status']!r}")
        records = []
        for n, rec in enumerate(data["items"], 1):
            if not isinstance(rec, dict):
                raise ValueError(f"item {n} is {type(rec).__name__}, not an object")
            check_fields(ItemRecord, rec, f"item {n}")
            _check_record(rec.get("check"), f"item {n}")
            if rec.get("status", "pending") not in STATUSES:
                raise ValueError(f"item {n} has status {rec['status']!r}")
            records.append(ItemRecord(**rec))
            if any(r.id == records[-1].id for r in records[:-1]):
                raise ValueError(f"item {n} repeats the id {records[-1].id!r}")
        data["items"] = records
        return cls(**data)


class RunStore:
    """The folder of run files."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def for_state_dir(cls, state_dir: Path) -> RunStore:
        return cls(state_dir / "checklists" / "runs")

    def path(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or run_id.startswith("."):
            raise UsageError(f"invalid run id {run_id!r}")
        return self.root / f"{run_id}.json"

    def save(
        self, run: Run, event: dict[str, Any] | None = None, earlier: Sequence[dict[str, Any]] = ()
    ) -> Path:
        """Write the run file atomically; append ``earlier`` events (changes made since the
        last save) and ``event`` (masked) to the audit trail, in one write."""
        run.updated_at = iso_utc()
        path = self.path(run.run_id)
        atomic.write_json(path, run.to_dict(), mode=0o600)
        events = [*earlier, *([event] if event is not None else [])]
        if events:
            entries = [{"ts": run.updated_at, "run_id": run.run_id, **e} for e in events]
            line = "\n".join(secrets.mask(json.dumps(e, default=str)) for e in entries)
            trail = self.root / f"{run.run_id}.events.jsonl"
            try:
                if _torn(trail):  # a write cut short (power loss, full disk) left half a line:
                    line = "\n" + line  # the new entry starts on its own line, not glued on
                atomic.append_line(trail, line, mode=0o600)
            except OSError as exc:  # a full disk: the run file above is saved already
                raise EmropsError(
                    f"cannot append to the audit trail {trail}: {exc.strerror or exc}",
                    hint=f"free space there, then resume the run (`--resume {run.run_id}`)",
                ) from None
        return path

    def load(self, run_id: str) -> Run:
        path = self.path(run_id)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(
                f"no checklist run {run_id!r} in {self.root}",
                hint="list runs with `emrops checklist status`",
            ) from None
        except (OSError, ValueError) as exc:  # ValueError: not JSON, or not UTF-8
            raise UsageError(f"cannot read run file {path}: {exc}") from None
        except RecursionError:  # arrays nested thousands deep
            raise UsageError(f"run file {path} is nested too deeply to read") from None
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            raise _not_a_run_file(path, data)
        try:
            run = Run.from_dict(data)
        except (TypeError, KeyError, ValueError) as exc:
            raise UsageError(f"run file {path} is damaged: {exc}") from None
        if run.run_id != run_id:  # saved under its own id, it would overwrite that run's file
            raise UsageError(
                f"run file {path} is damaged: it holds run {run.run_id!r}",
                hint="a run file is named after its run id; restore it or start a new run",
            )
        return run

    def list(self, skipped: list[str] | None = None) -> list[Run]:
        """Every run, newest first (run ids sort by start time). A foreign or damaged file
        does not hide the others: its error is added to ``skipped`` (for a warning)."""
        if not self.root.is_dir():
            return []
        runs = []
        for path in sorted(self.root.glob("*.json"), reverse=True):
            try:
                runs.append(self.load(path.stem))
            except UsageError as exc:
                if skipped is not None:
                    skipped.append(exc.message)
        return runs

    @contextmanager
    def locked(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock while driving it; Busy (exit 75) if another process holds it."""
        atomic.require_writable_folder(
            self.root,
            "the checklist runs folder",
            "set EMROPS_STATE_DIR (or state_dir in emrops.toml) to a folder this user can write",
        )
        self.root.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.root / f"{run_id}.lock"), timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise Busy(
                f"checklist run {run_id} is being driven by another process",
                hint="wait for it to finish, or resume it there",
            ) from None
        try:
            yield
        finally:
            lock.release()


def _not_a_run_file(path: Path, data: Any) -> UsageError:
    """A file of another kind, or a run file of another format version (a newer emrops)."""
    found = data.get("format") if isinstance(data, dict) else None
    family, _, version = RUN_FORMAT.rpartition("/")
    if isinstance(found, str) and found.startswith(family + "/"):
        other = found.rpartition("/")[2]
        newer = other.isdigit() and int(other) > int(version)
        return UsageError(
            f"run file {path} has format {found}; this emrops reads {RUN_FORMAT}"
            + (" (the file was written by a newer emrops)" if newer else ""),
            hint="use the emrops version that wrote it" if newer else "start a new run",
        )
    return UsageError(f"{path} is not a checklist run file ({RUN_FORMAT})")


def _torn(path: Path) -> bool:
    """Whether the file's last line has no line end (its last write did not finish)."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() == 0:
                return False
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"
    except OSError:
        return False
