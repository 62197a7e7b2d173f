"""Checklists rendered as documents, and the generated deployment docs in docs/.

The docs are generated, never edited by hand, so the written procedure and the executable
one cannot drift apart; ``emrops checklist docs --check`` (and a test) fails when they do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from emrops import atomic
from emrops.checklist import loader
from emrops.checklist.model import Checklist, Item
from emrops.checklist.report import printable


@dataclass(frozen=True)
class Doc:
    file: str
    checklist: str | None  # None: the navigation guide over all of them
    quick: bool = False


DOCS: tuple[Doc, ...] = (
    Doc("DEPLOYMENT_GUIDE.md", None),
    Doc("PRODUCTION_DEPLOYMENT_CHECKLIST.md", "production-deployment"),
    Doc("DEPLOYMENT_QUICK_START.md", "production-deployment", quick=True),
    Doc("MIGRATION.md", "postgres-migration"),
    Doc("RECOVERY.md", "recovery-drill"),
)


def _banner(source: str, command: str) -> str:
    return (
        f"<!-- Generated from {source} by `{command}`. Do not edit: change the checklist and "
        "run `emrops checklist docs`. -->"
    )


def _source(checklist: Checklist) -> str:
    return f"checklists/{checklist.path.name}"


def _facts(item: Item) -> str:
    facts = []
    if item.estimate:
        facts.append(f"about {item.estimate}")
    if item.when.env or item.when.env_not:
        facts.append(item.when.describe())
    facts.append("automatic check" if item.check else "manual")
    return " · ".join(facts)


def _check_line(item: Item) -> str:
    assert item.check is not None
    c = item.check
    return f"`{c.run}` (expects exit {c.expected_text}, timeout {c.timeout_text})"


def markdown(checklist: Checklist, quick: bool = False) -> str:
    """The checklist as Markdown: full (instructions and details) or quick (folded away)."""
    name = checklist.id
    command = f"emrops checklist export {name} --format md" + (" --quick" if quick else "")
    title = checklist.title + (": quick start" if quick else "")
    out = [_banner(_source(checklist), command), "", f"# {title}", ""]
    if checklist.description and not quick:
        out += [checklist.description, ""]
    if quick:
        out += [
            f"The checklist `{name}` with the details folded away, for operators who have done "
            f"it before. Run it with `emrops checklist run {name}`.",
            "",
        ]
    meta = []
    if checklist.environments:
        meta.append("Environments: " + ", ".join(checklist.environments))
    if checklist.estimate:
        meta.append(f"Estimated time: {checklist.estimate}")
    total = len(checklist.items)
    auto = sum(1 for item in checklist.items if item.check)
    meta.append(f"{total} items, {auto} with an automatic check")
    out += [f"- {m}" for m in meta] + [
        f"- Run it: `emrops checklist run {name}"
        + (f" --env {checklist.default_env}`" if checklist.default_env else "`"),
        "",
    ]
    for s_number, section in enumerate(checklist.sections, start=1):
        numbered = re.match(r"^\w+ \d+:", section.title)  # "Phase 1: ..." is numbered already
        head = f"## {section.title}" if numbered else f"## {s_number}. {section.title}"
        if section.estimate:
            head += f" ({section.estimate})"
        out += [head, ""]
        if section.when.env or section.when.env_not:
            out += [f"_{section.when.describe().capitalize()}._", ""]
        if section.description and not quick:
            out += [section.description, ""]
        for i_number, item in enumerate(section.items, start=1):
            number = f"{s_number}.{i_number}"
            out += _quick_item(item, number) if quick else _full_item(item, number)
    return printable("\n".join(out).rstrip() + "\n")  # no ESC sequences in a document


def _full_item(item: Item, number: str) -> list[str]:
    out = [f"### {number} {item.title}", "", f"`{item.id}` · {_facts(item)}", "", item.instructions]
    if item.details:
        out += ["", item.details]
    if item.check:
        out += ["", f"**Automatic check:** {_check_line(item)}"]
        if item.check.confirm:
            out += ["then a person confirms the result."]
    if item.evidence:
        out += ["", "**Evidence to record:**", ""]
        out += [f"- {e.prompt}" + ("" if e.required else " (optional)") for e in item.evidence]
    return [*out, ""]


def _quick_item(item: Item, number: str) -> list[str]:
    line = f"- [ ] **{number} {item.title}**"
    if item.check:
        line += f": `{item.check.run}`"
    if item.when.env or item.when.env_not:
        line += f" ({item.when.describe()})"
    return [
        line,
        "  <details><summary>How</summary>",
        "",
        *[f"  {text}" if text else "" for text in item.instructions.splitlines()],
        "",
        "  </details>",
        "",
    ]


def as_json(checklist: Checklist) -> str:
    data = asdict(checklist)
    data["path"] = str(checklist.path)
    return json.dumps(data, indent=2, default=str) + "\n"


def guide(checklists: Sequence[Checklist]) -> str:
    """DEPLOYMENT_GUIDE.md: which document (and which checklist run) to use when."""
    by_id = {c.id: c for c in checklists}
    out = [
        _banner("checklists/*.yaml", "emrops checklist docs"),
        "",
        "# Deployment guide",
        "",
        "Every procedure below is an executable checklist in `checklists/`. The documents are "
        "generated from the same files that `emrops checklist run` walks, so what is written "
        "here is what the tool asks for. Runs are saved after every item (who, when, answer, "
        "evidence, check output) and can be resumed; reports come out as Markdown, JSON or "
        "JUnit (`emrops checklist report RUN_ID --format junit`).",
        "",
        "| Document | Checklist | Use it when | Items | Time |",
        "| --- | --- | --- | --- | --- |",
    ]
    uses = {
        "PRODUCTION_DEPLOYMENT_CHECKLIST.md": "first production deployment, every step explained",
        "DEPLOYMENT_QUICK_START.md": "you have deployed before: the same steps, details folded",
        "MIGRATION.md": "moving the database from SQLite to PostgreSQL, with the rollback plan",
        "RECOVERY.md": "restoring from backup, and the regular recovery drill",
    }
    for doc in DOCS:
        if doc.checklist is None or doc.checklist not in by_id:
            continue
        c = by_id[doc.checklist]
        auto = sum(1 for item in c.items if item.check)
        out.append(
            f"| [{doc.file}]({doc.file}) | `{c.id}` | {uses.get(doc.file, c.title)} | "
            f"{len(c.items)} ({auto} automatic) | {c.estimate or ''} |"
        )
    out += ["", "## Running a checklist", ""]
    out += [
        "```sh",
        "emrops checklist list",
        "emrops checklist run production-deployment --env staging      # at a terminal",
        "emrops checklist run production-deployment --env production --non-interactive  # CI",
        "emrops checklist status                                          # runs, progress",
        "emrops checklist run production-deployment --resume RUN_ID       # after a break",
        "```",
        "",
        "In CI (no terminal, or `CI` set) only the automatic checks run; manual items are left "
        "pending and listed, and the command exits 3 when an automatic check fails "
        "(`--require-complete` also fails on pending items). See docs/checklists.md for "
        "writing checklists.",
        "",
        "## Checklists",
        "",
    ]
    for c in checklists:
        first = c.description.split("\n\n")[0] if c.description else ""
        out += [f"### {c.title} (`{c.id}`)", "", first, ""]
        out += [f"- {s.title}" + (f" ({s.estimate})" if s.estimate else "") for s in c.sections]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_docs(dirs: Sequence[Path] | None = None) -> dict[str, str]:
    """File name -> content of every generated document."""
    names = {doc.checklist for doc in DOCS if doc.checklist}
    loaded = {name: loader.load(name, dirs) for name in sorted(names)}
    out = {}
    for doc in DOCS:
        if doc.checklist is None:
            out[doc.file] = guide(list(loaded.values()))
        else:
            out[doc.file] = markdown(loaded[doc.checklist], quick=doc.quick)
    return out


def stale_docs(folder: Path, dirs: Sequence[Path] | None = None) -> list[str]:
    """Generated documents in ``folder`` that are missing or differ from the checklists."""
    stale = []
    for name, text in render_docs(dirs).items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    return stale


def write_docs(folder: Path, dirs: Sequence[Path] | None = None) -> list[str]:
    """(Re)write the generated documents; returns the names that changed."""
    atomic.require_writable_folder(folder, "--dir", "choose a folder this user can write")
    changed = []
    for name, text in render_docs(dirs).items():
        path = folder / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            atomic.write_text(path, text, mode=0o644)  # never a half-written document
            changed.append(name)
    return changed
