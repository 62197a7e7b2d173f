"""Reports of a checklist run: Markdown for people, JSON for scripts, JUnit XML for CI.

JUnit is written with junitparser (maintained; junit-xml's last release was 2023), one
testcase per item: failed items are failures, skipped, pending and n/a items are skips
with their reason, so CI test-report tabs (Azure PublishTestResults, GitHub) show them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite

from emrops.checklist.store import Run

FORMATS = ("md", "json", "junit")


def render(run: Run, fmt: str) -> str:
    if fmt == "md":
        return markdown(run)
    if fmt == "json":
        return json.dumps(run.to_dict(), indent=2) + "\n"
    if fmt == "junit":
        return junit(run)
    raise ValueError(fmt)


def _who(rec_by: dict[str, str] | None) -> str:
    return f"{rec_by['user']}@{rec_by['host']}" if rec_by else ""


def _cell(text: Any) -> str:
    return str(text or "").replace("|", "\\|").replace("\n", " ")


def markdown(run: Run) -> str:
    counts = run.counts()
    lines = [
        f"# Checklist run {run.run_id}: {run.checklist_title}",
        "",
        f"- Checklist: `{run.checklist_id}` version {run.checklist_version} "
        f"(sha256 `{run.sha256[:12]}`)",
        f"- Environment: {run.env or '(none)'}",
        f"- Status: **{run.status}**",
        f"- Started: {run.started_at} by {_who(run.started_by)}",
        f"- Finished: {run.finished_at or '(not finished)'}",
        "- Items: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n),
        "",
        "| Item | Status | Method | By | At | Reason / evidence |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rec in run.items:
        notes = [rec.reason] if rec.reason else []
        notes += [f"{k}: {v}" for k, v in rec.evidence.items()]
        lines.append(
            f"| `{rec.id}` {_cell(rec.title)} | {rec.status} | {rec.method or ''} | "
            f"{_cell(_who(rec.by))} | {rec.at or ''} | {_cell('; '.join(notes))} |"
        )
    checked = [rec for rec in run.items if rec.check]
    if checked:
        lines += ["", "## Check output", ""]
        for rec in checked:
            check = rec.check or {}
            lines += [
                f"### `{rec.id}`: `{check.get('command')}`",
                "",
                f"exit {check.get('exit_code')} (expected {check.get('expected')}), "
                f"{check.get('duration_s')}s" + (", timed out" if check.get("timed_out") else ""),
                "",
                "```text",
                (check.get("output") or "").rstrip().replace("```", "'''"),
                "```",
                "",
            ]
    # control characters (ESC sequences) in a document shown with `cat` act on the terminal
    return printable("\n".join(lines).rstrip() + "\n")


# Characters XML 1.0 cannot hold at all, even escaped: check output with a NUL, an ESC or a
# form feed made a report no CI parser reads ("not well-formed (invalid token)").
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def printable(text: str) -> str:
    """``text`` with characters XML cannot hold written as visible escapes (``\\x1b``)."""
    return _NOT_XML.sub(
        lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text
    )


def junit(run: Run) -> str:
    suite = TestSuite(printable(f"checklist {run.checklist_id} ({run.env or 'no env'})"))
    suite.timestamp = run.started_at
    suite.hostname = printable(run.started_by.get("host", ""))
    for rec in run.items:
        case = TestCase(printable(rec.id), classname=printable(f"{run.checklist_id}.{rec.section}"))
        check = rec.check or {}
        if check.get("duration_s") is not None:
            case.time = float(check["duration_s"])
        if rec.status == "failed":
            case.result = [Failure(printable(rec.reason or "failed"), type_="checklist.failed")]
        elif rec.status in ("skipped", "pending", "n/a"):
            case.result = [Skipped(printable(f"{rec.status}: {rec.reason or ''}".rstrip(": ")))]
        if check.get("output"):
            case.system_out = printable(f"$ {check.get('command')}\n{check['output']}")
        suite.add_testcase(case)
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.update_statistics()
    raw = xml.tostring()
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text.strip() + "\n"
