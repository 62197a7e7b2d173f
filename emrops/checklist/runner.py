"""Walking a checklist: the decisions for each item, talking to a person only through RunnerIO.

The runner never prints or reads a terminal itself. The CLI supplies a RunnerIO (rich
prompts); tests can supply their own. Progress is saved after every item, so a run that is
killed resumes at the first item that is neither done, skipped nor n/a.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from emrops import secrets
from emrops.checklist.commands import CheckResult, display, run_check
from emrops.checklist.model import Checklist, Evidence, Item
from emrops.checklist.patterns import DEADLINE, MAX_ANSWER, PatternTimeout, full_match
from emrops.checklist.store import TERMINAL, ItemRecord, Run, RunStore, actor
from emrops.errors import Interrupted, UsageError
from emrops.logs import iso_utc, new_run_id

# What a person can answer at an item.
DONE, FAIL, SKIP, RETRY, QUIT = "done", "fail", "skip", "retry", "quit"

MANUAL_PENDING = "manual item: needs a person (run with --interactive)"
_URL = re.compile(r"^https?://\S+$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?\s*\S*$")  # 42, 3.5, 12min, 250ms


class RunnerIO(Protocol):
    """What the runner needs from a user interface."""

    def show_item(self, item: Item, position: int, total: int, record: ItemRecord) -> None: ...

    def check_started(self, item: Item, command: str) -> None: ...

    def check_finished(self, item: Item, result: CheckResult) -> None: ...

    def choose(self, question: str, choices: list[str], default: str) -> str: ...

    def ask_text(self, prompt: str, *, required: bool) -> str: ...

    def warn(self, message: str) -> None: ...


CheckFn = Callable[[Item, str | None], CheckResult]


def default_check_fn(extra_env: dict[str, str] | None = None) -> CheckFn:
    def run(item: Item, env: str | None) -> CheckResult:
        assert item.check is not None
        return run_check(item.check, env, extra_env=extra_env)

    return run


def new_run(checklist: Checklist, env: str | None, mode: str) -> Run:
    """A fresh run: every item pending, or n/a when its `when:` excludes this environment."""
    now = iso_utc()
    items = []
    for item in checklist.items:
        rec = ItemRecord(
            id=item.id, section=item.section_id, title=item.title, definition=item.definition
        )
        if not checklist.applies(item, env):
            rec.status, rec.reason = "n/a", f"not for environment {env or '(none)'}"
        items.append(rec)
    return Run(
        run_id=new_run_id(),
        checklist_id=checklist.id,
        checklist_title=checklist.title,
        checklist_version=checklist.version,
        checklist_path=str(checklist.path),
        sha256=checklist.sha256,
        env=env,
        mode=mode,
        status="in-progress",
        started_at=now,
        updated_at=now,
        started_by=actor(),
        items=items,
    )


def resolve_env(checklist: Checklist, env: str | None) -> str | None:
    """The environment for a new run: --env, else the checklist's default; must be declared."""
    env = env or checklist.default_env
    if checklist.environments:
        if env is None:
            raise UsageError(
                f"checklist {checklist.id} needs --env",
                hint=f"use --env with one of: {', '.join(checklist.environments)}",
            )
        if env not in checklist.environments:
            raise UsageError(
                f"unknown environment {env!r} for checklist {checklist.id}",
                hint=f"use one of: {', '.join(checklist.environments)}",
            )
    return env


def check_resumable(checklist: Checklist, run: Run, env: str | None, force: bool) -> None:
    """Refuse to resume a run whose checklist changed since it started (unless forced)."""
    if run.checklist_id != checklist.id:
        raise UsageError(
            f"run {run.run_id} belongs to checklist {run.checklist_id}, not {checklist.id}",
            hint=f"emrops checklist run {run.checklist_id} --resume {run.run_id}",
        )
    if env is not None and env != run.env:
        raise UsageError(
            f"run {run.run_id} was started for environment {run.env!r}, not {env!r}",
            hint="resume without --env, or start a new run",
        )
    if run.sha256 != checklist.sha256 and not force:
        raise UsageError(
            f"checklist {checklist.id} changed since run {run.run_id} started "
            f"(sha256 {run.sha256[:12]} -> {checklist.sha256[:12]})",
            hint="start a new run, or resume anyway with --force "
            "(items are matched by id; new items start pending)",
        )
    ids = [item.id for item in checklist.items]
    recorded = [rec.id for rec in run.items]
    if run.sha256 == checklist.sha256 and recorded != ids and not force:
        # same checklist file, other items: the run file was edited by hand
        missing = [i for i in ids if i not in recorded]
        extra = [i for i in recorded if i not in ids]
        what = "; ".join(
            part
            for part in (
                f"no record of {', '.join(missing)}" if missing else "",
                f"records of unknown items {', '.join(extra)}" if extra else "",
                "items in another order" if not missing and not extra else "",
            )
            if part
        )
        raise UsageError(
            f"run {run.run_id} does not match checklist {checklist.id}: {what}",
            hint="the run file was edited; resume with --force to match items by id "
            "(missing items start pending), or start a new run",
        )
    if run.sha256 != checklist.sha256 or recorded != ids:
        _reconcile(checklist, run)


def _reconcile(checklist: Checklist, run: Run) -> None:
    """After --force: keep records by item id, add new items, drop removed ones."""
    old = {rec.id: rec for rec in run.items}
    items = []
    for item in checklist.items:
        fresh = ItemRecord(
            id=item.id, section=item.section_id, title=item.title, definition=item.definition
        )
        rec = old.get(item.id) or fresh
        if rec is not fresh and rec.status != "pending" and _changed(rec, item):
            # done (or failed, skipped) under another wording, check or evidence: not done
            # under this one. Kept, it reported a step as done that nobody did as now written.
            was = rec.status
            rec = fresh
            rec.reason = f"item changed since it was {was} in this run: to do again"
        rec.section, rec.title, rec.definition = item.section_id, item.title, item.definition
        if not checklist.applies(item, run.env):
            rec.status, rec.reason = "n/a", f"not for environment {run.env or '(none)'}"
        elif rec.status == "n/a":
            rec.status, rec.reason = "pending", None
        items.append(rec)
    run.items = items
    run.sha256 = checklist.sha256
    run.checklist_version = checklist.version


def _changed(rec: ItemRecord, item: Item) -> bool:
    """Whether ``item`` differs from the one ``rec`` was recorded for. Run files written
    before items carried a definition hash compare the title and the check command."""
    if rec.definition is not None:
        return rec.definition != item.definition
    if rec.title != item.title:
        return True
    ran = (rec.check or {}).get("command")
    return ran is not None and item.check is not None and ran != display(item.check, None)


@dataclass
class Runner:
    checklist: Checklist
    run: Run
    store: RunStore
    io: RunnerIO
    interactive: bool
    check_fn: CheckFn
    held: list[dict[str, Any]] = field(default_factory=list)  # events not saved yet

    def execute(self) -> Run:
        """Visit every open item; save after each. Raises Interrupted on Ctrl-C or end of input."""
        self.run.mode = "interactive" if self.interactive else "non-interactive"
        self.run.status = "in-progress"
        self.run.sessions.append({"started_at": iso_utc(), "by": actor(), "mode": self.run.mode})
        self.store.save(self.run, {"event": "session-start", "mode": self.run.mode, **actor()})
        items = self.checklist.items
        try:
            for position, item in enumerate(items, start=1):
                rec = self.run.record(item.id)
                if rec.status in TERMINAL:
                    continue
                if not self.interactive and item.check is None:
                    if rec.reason != MANUAL_PENDING:  # saved with the next change: one
                        # rewrite of the run file per manual item made long lists quadratic
                        self._set(rec, "pending", None, MANUAL_PENDING, hold=True)
                    continue
                self.io.show_item(item, position, len(items), rec)
                if self._visit(item, rec) == QUIT:
                    self.run.status = "paused"
                    self._save({"event": "paused", "item": item.id})
                    return self.run
        except (KeyboardInterrupt, EOFError) as exc:
            self.run.status = "interrupted"
            self._save({"event": "interrupted"})
            why = "input ended" if isinstance(exc, EOFError) else "interrupted"
            raise Interrupted(
                f"{why}: checklist run {self.run.run_id} saved",
                hint=f"emrops checklist run {self.checklist.id} --resume {self.run.run_id}",
            ) from None
        counts = self.run.counts()
        self.run.status = (
            "failed" if counts["failed"] else "incomplete" if counts["pending"] else "complete"
        )
        self.run.finished_at = iso_utc() if self.run.status == "complete" else None
        self._save({"event": "finished", "status": self.run.status})
        return self.run

    # -- one item ------------------------------------------------------------------------
    def _visit(self, item: Item, rec: ItemRecord) -> str | None:
        if item.check is None:
            return self._manual(item, rec)
        while True:
            rec.attempts += 1
            self.io.check_started(item, display(item.check, self.run.env))
            result = self.check_fn(item, self.run.env)
            rec.check = {**asdict(result), "at": iso_utc()}
            self.io.check_finished(item, result)
            if result.passed:
                if not item.needs_person:
                    self._set(rec, "done", "auto", None)
                    return None
                if not self.interactive:
                    need = "evidence" if item.evidence else "a person's confirmation"
                    self._set(rec, "pending", "auto", f"check passed; needs {need}")
                    return None
                return self._manual(item, rec, method="auto+manual")
            if not self.interactive:
                self._set(rec, "failed", "auto", f"check failed: {result.summary()}")
                return None
            answer = self.io.choose(
                f"Check failed ({result.summary()}). Retry, mark failed, skip, or quit?",
                [RETRY, FAIL, SKIP, QUIT],
                RETRY,
            )
            if answer == RETRY:
                continue
            if answer == QUIT:
                self._set(rec, "failed", "auto", f"check failed: {result.summary()}")
                return QUIT
            reason = self.io.ask_text(f"Reason to {answer} this item", required=True)
            status = "failed" if answer == FAIL else "skipped"
            self._set(rec, status, "auto+manual", reason, answer)
            return None

    def _manual(self, item: Item, rec: ItemRecord, method: str = "manual") -> str | None:
        question = (
            "Check passed. Confirm done, mark failed, skip, or quit?"
            if method != "manual"
            else "Done, failed, skip, or quit (save and resume later)?"
        )
        answer = self.io.choose(question, [DONE, FAIL, SKIP, QUIT], DONE)
        if answer == QUIT:
            return QUIT
        if answer in (FAIL, SKIP):
            reason = self.io.ask_text(
                "What went wrong" if answer == FAIL else "Reason for skipping", required=True
            )
            self._set(rec, "failed" if answer == FAIL else "skipped", method, reason, answer)
            return None
        rec.evidence = {e.id: value for e in item.evidence if (value := self._evidence(e))}
        self._set(rec, "done", method, None, answer)
        return None

    def _evidence(self, evidence: Evidence) -> str:
        while True:
            value = self.io.ask_text(evidence.prompt, required=evidence.required).strip()
            if not value and not evidence.required:
                return ""
            problem = evidence_problem(evidence, value)
            if problem is None:
                return secrets.mask(value)
            self.io.warn(problem)

    def _save(self, event: dict[str, Any]) -> None:
        """Save the run with the events held since the last save, then ``event``."""
        held, self.held = self.held, []
        self.store.save(self.run, event, earlier=held)

    def _set(
        self,
        rec: ItemRecord,
        status: str,
        method: str | None,
        reason: str | None,
        answer: str | None = None,
        *,
        hold: bool = False,
    ) -> None:
        """Record an outcome (who, when, the person's answer) and save the run file
        (``hold``: with the next save, for changes no work depends on)."""
        rec.status, rec.method = status, method
        rec.answer = answer or ("auto" if method == "auto" else None)
        rec.reason = secrets.mask(reason) if reason else None
        rec.by, rec.at = actor(), iso_utc()
        event = {
            "event": "item",
            "item": rec.id,
            "status": status,
            "method": method,
            "answer": rec.answer,
            "reason": rec.reason,
            **rec.by,
        }
        if hold:
            self.held.append(event)
        else:
            self._save(event)


def evidence_problem(evidence: Evidence, value: str) -> str | None:
    """Why ``value`` is not acceptable evidence, or None."""
    if not value:
        return f"{evidence.prompt}: an answer is required"
    if evidence.kind == "url" and not _URL.fullmatch(value):
        return f"{evidence.prompt}: expected a URL starting with http:// or https://"
    if evidence.kind == "ticket" and not re.fullmatch(r"[\w#./:-]+", value):
        return f"{evidence.prompt}: expected a ticket reference without spaces (e.g. OPS-123)"
    if evidence.kind == "number" and not _NUMBER.fullmatch(value):
        return f"{evidence.prompt}: expected a number (optionally with a unit, e.g. 12min)"
    if len(value) > MAX_ANSWER:
        return f"{evidence.prompt}: longer than {MAX_ANSWER} characters"
    if evidence.pattern:
        try:
            fits = full_match(evidence.pattern, value)
        except PatternTimeout:
            return (
                f"{evidence.prompt}: the checklist's pattern {evidence.pattern} could not "
                f"decide this answer within {DEADLINE:g} s (the pattern needs fixing); "
                "type it again exactly as expected, or Ctrl-C to save and stop"
            )
        if not fits:
            return f"{evidence.prompt}: does not match the expected format {evidence.pattern}"
    return None
