"""Validation regexes match the whole value: `$` alone accepts a trailing newline, which would
let `id\n` through into a path, a blob name or a shell command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from emrops.backup.manifest import check_id
from emrops.checklist.loader import load_file
from emrops.checklist.model import Evidence
from emrops.checklist.runner import evidence_problem
from emrops.config import load_settings
from emrops.errors import UsageError
from emrops.loadtest.budgets import parse_budget
from emrops.provision.environments import load_environment

GOOD_ID = "20261125T193012.345Z-3fa2c1"


def test_backup_id_with_trailing_newline_is_refused() -> None:
    assert check_id(GOOD_ID) == GOOD_ID
    with pytest.raises(UsageError, match="invalid backup id"):
        check_id(GOOD_ID + "\n")


def test_environment_name_with_trailing_newline_is_refused() -> None:
    with pytest.raises(UsageError, match="invalid environment name 'staging\\\\n'"):
        load_environment(load_settings(), "staging\n")


def test_evidence_url_and_number_must_be_the_whole_answer() -> None:
    url = Evidence(id="link", prompt="Link", kind="url")
    assert evidence_problem(url, "https://example.org/run/1") is None
    assert evidence_problem(url, "https://example.org/run/1\n") is not None
    number = Evidence(id="n", prompt="N", kind="number")
    assert evidence_problem(number, "12min") is None
    assert evidence_problem(number, "12min\n") is not None


def test_budget_expression_with_trailing_newline_is_malformed() -> None:
    assert parse_budget("p95 < 250ms").op == "<"
    with pytest.raises(UsageError, match="malformed budget"):
        parse_budget("p95 < 250ms\nerrors > 0")
    with pytest.raises(UsageError, match="malformed budget"):  # `$` matched before the \n
        parse_budget("p95<250ms\n")


def test_checklist_slug_with_trailing_newline_fails_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        'schema: emrops.checklist/1\nid: "x\\n"\ntitle: X\nversion: 1\n'
        "sections:\n  - id: s\n    title: S\n    items:\n"
        "      - id: a\n        title: A\n        instructions: do it\n"
    )
    with pytest.raises(UsageError) as caught:
        load_file(path)
    assert "does not match" in caught.value.message
