"""Helpers for checklist tests: small checklist files written into tmp_path."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

BASIC = """\
schema: emrops.checklist/1
id: {name}
title: Basic checklist
version: 1
environments: [staging, production]
default_env: staging
sections:
  - id: first
    title: First section
    items:
      - id: auto-ok
        title: Automatic check that passes
        instructions: Runs `true`.
        check:
          run: "true"
          timeout: 10s
      - id: manual-ticket
        title: Manual item with evidence
        instructions: Do the **thing** by hand.
        evidence:
          - id: ticket
            prompt: Ticket number
            pattern: "[A-Z]+-[0-9]+"
          - id: note
            prompt: A note
            required: false
      - id: prod-only
        title: Production only
        instructions: Only in production.
        when: {{env: production}}
  - id: second
    title: Second section
    items:
      - id: manual-skip
        title: Manual item to skip
        instructions: Skip this one.
      - id: auto-echo
        title: Automatic check with output
        instructions: Echoes a DSN with a password.
        check:
          run: "echo postgresql://app:hunter22secret@db.example/emrsim"
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def basic(tmp_path: Path) -> Path:
    """A five-item checklist: auto pass, manual with evidence, prod-only, manual, auto echo."""
    return write(tmp_path / "basic.yaml", BASIC.format(name="basic"))


def runs_dir(root: Path, state_dir: Path | None = None) -> Path:
    return (state_dir or root / ".emrops") / "checklists" / "runs"


def only_run(root: Path, state_dir: Path | None = None) -> dict:
    files = sorted(runs_dir(root, state_dir).glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())


def by_id(run: dict) -> dict[str, dict]:
    return {item["id"]: item for item in run["items"]}
