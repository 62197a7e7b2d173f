"""JUnit XML for CI test tabs: one testcase per budget (junitparser, as the checklist reports).

A broken budget is a failure with the measured value; a budget on a step that had no requests
is a failure too. An unreliable generator adds a ``generator`` testcase marked as skipped with
the reasons, so the report shows it without failing the build on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from junitparser import Failure, JUnitXml, Skipped, TestCase, TestSuite

from emrops import atomic
from emrops.loadtest.budgets import format_value


def render(result: dict[str, Any]) -> str:
    config = result["config"]
    suite = TestSuite(f"emrops loadtest {config['scenario']} ({config['model']} model)")
    suite.timestamp = result["started_at"]
    classname = f"loadtest.{config['scenario']}"
    for budget in result["budgets"]:
        case = TestCase(budget["expr"], classname=classname)
        actual = budget["actual"]
        shown = "no requests" if actual is None else format_value(budget["metric"], actual)
        name = f"{budget['step']}.{budget['metric']}" if budget["step"] else budget["metric"]
        if not budget["passed"]:
            case.result = [
                Failure(f"budget {budget['expr']} broken: {name} = {shown}", type_="budget")
            ]
        case.system_out = f"{name} = {shown}"
        suite.add_testcase(case)
    generator = result["generator"]
    if not generator["reliable"]:
        case = TestCase("generator", classname=classname)
        case.result = [Skipped("unreliable: " + "; ".join(generator["unreliable_reasons"]))]
        suite.add_testcase(case)
    suite.update_statistics()
    xml = JUnitXml()
    xml.add_testsuite(suite)
    xml.update_statistics()
    raw = xml.tostring()
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text.strip() + "\n"


def write(path: Path, result: dict[str, Any]) -> None:
    atomic.write_text(path, render(result), mode=0o600)
