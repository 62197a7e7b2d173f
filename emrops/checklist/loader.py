"""Find, read and validate checklist files; every problem is reported as file:line."""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

from emrops.checklist.model import DEFAULT_TIMEOUT, Check, Checklist, Evidence, Item, Section, When
from emrops.checklist.patterns import pattern_problem
from emrops.checklist.yamlsrc import SourceDoc, parse_yaml
from emrops.errors import UsageError
from emrops.paths import user_path
from emrops.resources import checklists_dir
from emrops.units import parse_duration

SCHEMA_FILE = "schema.json"
FORMAT = "emrops.checklist/1"


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The JSON schema every checklist file is validated against (checklists/schema.json)."""
    with (checklists_dir() / SCHEMA_FILE).open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def search_dirs(extra: Path | None = None) -> list[Path]:
    """Folders searched for NAME.yaml: the configured one (if any) first, then the bundled one."""
    dirs = [extra] if extra else []
    dirs.append(checklists_dir())
    return dirs


@dataclass(frozen=True)
class Entry:
    """A checklist found on disk (not yet validated)."""

    name: str
    path: Path


def discover(dirs: Iterable[Path]) -> list[Entry]:
    """Every ``*.yaml`` in the search folders; an earlier folder shadows a later one."""
    seen: dict[str, Entry] = {}
    for folder in dirs:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.yaml")):
            seen.setdefault(path.stem, Entry(path.stem, path))
    return sorted(seen.values(), key=lambda e: e.name)


def summaries(dirs: Iterable[Path]) -> list[dict[str, Any]]:
    """One row per checklist found; an invalid file is listed with its error, not hidden."""
    rows: list[dict[str, Any]] = []
    for entry in discover(dirs):
        try:
            c = load_file(entry.path)
        except UsageError as exc:
            rows.append({"name": entry.name, "path": str(entry.path), "error": exc.message})
            continue
        rows.append(
            {
                "name": c.id,
                "title": c.title,
                "version": c.version,
                "items": len(c.items),
                "automatic": sum(1 for i in c.items if i.check),
                "environments": list(c.environments),
                "estimate": c.estimate,
                "path": str(c.path),
            }
        )
    return rows


def locate(name: str, dirs: Sequence[Path]) -> Path:
    """Path of checklist ``name`` (a bare name or a path to a .yaml file)."""
    as_path = user_path(name)
    if name.endswith((".yaml", ".yml")) or "/" in name:
        if not as_path.is_file():
            raise UsageError(f"checklist file not found: {as_path}")
        return as_path.resolve()
    for entry in discover(dirs):
        if entry.name == name:
            return entry.path
    known = ", ".join(e.name for e in discover(dirs)) or "(none)"
    raise UsageError(
        f"unknown checklist {name!r}",
        hint=f"known checklists: {known} (see `emrops checklist list`)",
    )


def load(name: str, dirs: Sequence[Path] | None = None) -> Checklist:
    """Load and validate a checklist by name or path. Raises UsageError naming file:line."""
    return load_file(locate(name, dirs if dirs is not None else search_dirs()))


# A checklist is a few kilobytes (the bundled ones are under 40 KB). Reading a huge file
# with the pure-Python YAML parser takes seconds per megabyte: refused at once instead.
MAX_BYTES = 1024 * 1024


def load_file(path: Path) -> Checklist:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read checklist {path}: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise UsageError(
            f"{path} is larger than {MAX_BYTES // 1024 // 1024} MB: not a checklist",
            hint="a checklist is a YAML file of a few kilobytes; check the path",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
            what = "is UTF-16 text, not UTF-8"
            line = 1
        else:
            what = f"is not UTF-8 text (byte 0x{raw[exc.start]:02x})"
            line = raw[: exc.start].count(b"\n") + 1
        raise UsageError(
            f"{path}:{line}: checklist {what}", hint="save the file as UTF-8"
        ) from None
    doc = parse_yaml(path, text)
    problems = validate(doc)
    if problems:
        raise UsageError(
            f"invalid checklist {path}:\n" + "\n".join(problems),
            hint="see checklists/schema.json and docs/checklists.md",
        )
    return _build(doc, hashlib.sha256(raw).hexdigest())


def validate(doc: SourceDoc) -> list[str]:
    """All problems in a parsed checklist, each as ``file:line: message``, in line order."""
    data = doc.data
    if not isinstance(data, dict):
        return [f"{doc.at(())}: a checklist must be a YAML mapping (id, title, sections, ...)"]
    found: list[tuple[int, str]] = []
    validator = jsonschema.Draft202012Validator(
        schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for error in validator.iter_errors(data):
        where = tuple(error.absolute_path)
        label = "/".join(str(p) for p in where) or "top level"
        found.append((doc.line(where), f"{doc.at(where)}: {label}: {_message(error)}"))
    if found:  # semantic checks assume the shape is right
        return [message for _, message in sorted(found)]
    found.extend(_semantic(doc))
    return [message for _, message in sorted(found)]


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return error.message.replace("Additional properties are not allowed", "unknown key(s)")
    if (
        error.validator == "oneOf"
        and error.absolute_path
        and error.absolute_path[-1] == ("expect_exit")
    ):
        return f"{error.instance!r} is not an exit code (0-255) or a list of exit codes"
    if error.validator == "oneOf":
        return f"{error.instance!r} is not a name or a list of names"
    return error.message


def _semantic(doc: SourceDoc) -> list[tuple[int, str]]:
    data = doc.data
    out: list[tuple[int, str]] = []

    def problem(where: tuple[str | int, ...], message: str) -> None:
        out.append((doc.line(where), f"{doc.at(where)}: {message}"))

    if data["id"] != doc.path.stem:
        problem(("id",), f"id {data['id']!r} must match the file name {doc.path.stem!r}")
    envs = data.get("environments") or []
    if data.get("default_env") and data["default_env"] not in envs:
        problem(("default_env",), f"default_env {data['default_env']!r} is not in environments")
    seen_items: dict[str, int] = {}
    seen_sections: dict[str, int] = {}
    for s_index, section in enumerate(data["sections"]):
        s_where: tuple[str | int, ...] = ("sections", s_index)
        if section["id"] in seen_sections:
            problem(
                (*s_where, "id"),
                f"duplicate section id {section['id']!r} "
                f"(first used on line {seen_sections[section['id']]})",
            )
        seen_sections.setdefault(section["id"], doc.line((*s_where, "id")))
        out.extend(_check_when(doc, section.get("when"), (*s_where, "when"), envs))
        for i_index, item in enumerate(section["items"]):
            where: tuple[str | int, ...] = (*s_where, "items", i_index)
            if item["id"] in seen_items:
                problem(
                    (*where, "id"),
                    f"duplicate item id {item['id']!r} "
                    f"(first used on line {seen_items[item['id']]})",
                )
            seen_items.setdefault(item["id"], doc.line((*where, "id")))
            out.extend(_check_when(doc, item.get("when"), (*where, "when"), envs))
            check = item.get("check")
            if check is not None:
                try:
                    argv = shlex.split(check["run"])
                except ValueError as exc:
                    problem((*where, "check", "run"), f"cannot parse check command: {exc}")
                else:
                    if not argv:
                        problem((*where, "check", "run"), "empty check command")
                if "timeout" in check and parse_duration(check["timeout"]) <= 0:
                    # killed before it starts: the item could only ever fail
                    problem(
                        (*where, "check", "timeout"),
                        f"timeout {check['timeout']!r} leaves the check no time to run",
                    )
            ids: dict[str, int] = {}
            for e_index, evidence in enumerate(item.get("evidence") or []):
                e_where = (*where, "evidence", e_index, "id")
                if evidence["id"] in ids:
                    problem(e_where, f"duplicate evidence id {evidence['id']!r}")
                ids[evidence["id"]] = 1
                bad = evidence.get("pattern") and pattern_problem(evidence["pattern"])
                if bad:
                    problem((*where, "evidence", e_index, "pattern"), bad)
    return out


def _check_when(
    doc: SourceDoc, when: dict[str, Any] | None, where: tuple[str | int, ...], envs: list[str]
) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for key in ("env", "env_not"):
        for name in _names(when.get(key) if when else None):
            if not envs:
                line = doc.line((*where, key))
                out.append(
                    (line, f"{doc.at((*where, key))}: when: the checklist declares no environments")
                )
            elif name not in envs:
                line = doc.line((*where, key))
                out.append(
                    (
                        line,
                        f"{doc.at((*where, key))}: when: unknown environment {name!r} "
                        f"(declared: {', '.join(envs)})",
                    )
                )
    return out


def _names(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _exits(value: int | list[int]) -> tuple[int, ...]:
    return (value,) if isinstance(value, int) else tuple(value)


def _when(data: dict[str, Any] | None) -> When:
    if not data:
        return When()
    return When(env=_names(data.get("env")), env_not=_names(data.get("env_not")))


def _build(doc: SourceDoc, sha256: str) -> Checklist:
    data = doc.data
    sections = []
    for s_index, s in enumerate(data["sections"]):
        items = []
        for i_index, it in enumerate(s["items"]):
            where = ("sections", s_index, "items", i_index)
            check = None
            if it.get("check"):
                c = it["check"]
                timeout_text = c.get("timeout", "60s")
                check = Check(
                    run=c["run"],
                    timeout=parse_duration(timeout_text) if "timeout" in c else DEFAULT_TIMEOUT,
                    timeout_text=timeout_text,
                    expect_exit=_exits(c.get("expect_exit", 0)),
                    confirm=bool(c.get("confirm", False)),
                    line=doc.line((*where, "check", "run")),
                )
            evidence = tuple(
                Evidence(
                    id=e["id"],
                    prompt=e["prompt"],
                    kind=e.get("kind", "text"),
                    required=bool(e.get("required", True)),
                    pattern=e.get("pattern"),
                )
                for e in it.get("evidence") or []
            )
            items.append(
                Item(
                    id=it["id"],
                    title=it["title"],
                    instructions=it["instructions"].strip(),
                    details=(it.get("details") or "").strip(),
                    section_id=s["id"],
                    check=check,
                    evidence=evidence,
                    when=_when(it.get("when")),
                    estimate=it.get("estimate"),
                    line=doc.line((*where, "id")),
                )
            )
        sections.append(
            Section(
                id=s["id"],
                title=s["title"],
                items=tuple(items),
                description=(s.get("description") or "").strip(),
                estimate=s.get("estimate"),
                when=_when(s.get("when")),
            )
        )
    return Checklist(
        id=data["id"],
        title=data["title"],
        version=int(data["version"]),
        sections=tuple(sections),
        path=doc.path,
        sha256=sha256,
        description=(data.get("description") or "").strip(),
        environments=tuple(data.get("environments") or ()),
        default_env=data.get("default_env"),
        estimate=data.get("estimate"),
    )
