"""The checklist definition: sections of items, each manual, automatic, or both."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class When:
    """Environment conditions: ``env`` (only these) and ``env_not`` (not these)."""

    env: tuple[str, ...] = ()
    env_not: tuple[str, ...] = ()

    def applies(self, env: str | None) -> bool:
        if self.env and env not in self.env:
            return False
        return not (self.env_not and env in self.env_not)

    def describe(self) -> str:
        parts = []
        if self.env:
            parts.append("only for " + ", ".join(self.env))
        if self.env_not:
            parts.append("not for " + ", ".join(self.env_not))
        return "; ".join(parts)


@dataclass(frozen=True)
class Check:
    """An automatic check: a command line, its timeout and the exit code that means "passed"."""

    run: str
    timeout: float = DEFAULT_TIMEOUT
    timeout_text: str = "60s"
    expect_exit: tuple[int, ...] = (0,)
    confirm: bool = False
    line: int = 0  # where `run:` is written, for error messages

    @property
    def expected_text(self) -> str:
        return " or ".join(str(code) for code in self.expect_exit)


@dataclass(frozen=True)
class Evidence:
    """Something a person types in as proof: a URL, a ticket number, a measurement."""

    id: str
    prompt: str
    kind: str = "text"
    required: bool = True
    pattern: str | None = None


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    instructions: str
    section_id: str
    details: str = ""
    check: Check | None = None
    evidence: tuple[Evidence, ...] = ()
    when: When = field(default_factory=When)
    estimate: str | None = None
    line: int = 0

    @property
    def definition(self) -> str:
        """SHA-256 of what the item asks (title, instructions, check, evidence, when), not of
        where it stands: moving it leaves this unchanged, rewording it does not."""
        check = asdict(self.check) if self.check else None
        if check:
            check.pop("line")
        what = {
            "title": self.title,
            "instructions": self.instructions,
            "details": self.details,
            "check": check,
            "evidence": [asdict(e) for e in self.evidence],
            "when": asdict(self.when),
        }
        text = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    @property
    def automatic(self) -> bool:
        return self.check is not None

    @property
    def needs_person(self) -> bool:
        """True when a person must act: no check, evidence to type, or confirm after the check."""
        return self.check is None or bool(self.evidence) or self.check.confirm


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    items: tuple[Item, ...]
    description: str = ""
    estimate: str | None = None
    when: When = field(default_factory=When)


@dataclass(frozen=True)
class Checklist:
    id: str
    title: str
    version: int
    sections: tuple[Section, ...]
    path: Path
    sha256: str  # of the file's bytes: a resumed run refuses a changed definition
    description: str = ""
    environments: tuple[str, ...] = ()
    default_env: str | None = None
    estimate: str | None = None

    @property
    def items(self) -> list[Item]:
        return [item for section in self.sections for item in section.items]

    def item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise KeyError(item_id)

    def section(self, section_id: str) -> Section:
        for section in self.sections:
            if section.id == section_id:
                return section
        raise KeyError(section_id)

    def applies(self, item: Item, env: str | None) -> bool:
        return self.section(item.section_id).when.applies(env) and item.when.applies(env)
