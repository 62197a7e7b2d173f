"""Run files damaged or edited by hand: a clear error naming the file and what is wrong, exit 2,
never an "unexpected" one (before: a JSON array or bytes that are not UTF-8 gave "unexpected
AttributeError" / "unexpected UnicodeDecodeError" from every checklist command, and a field of
the wrong type failed later while rendering). Listing runs names the file it skipped."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.checklist.conftest import runs_dir, write
from tests.checklist.test_resume import THREE


def _set(field: str, value: object) -> Callable[[dict], object]:
    def change(run: dict) -> dict:
        run[field] = value
        return run

    return change


def _item(n: int, field: str, value: object) -> Callable[[dict], object]:
    def change(run: dict) -> dict:
        run["items"][n][field] = value
        return run

    return change


def _replace_item(n: int, value: object) -> Callable[[dict], object]:
    def change(run: dict) -> dict:
        run["items"][n] = value
        return run

    return change


CASES: dict[str, tuple[bytes | Callable[[dict], object], str]] = {
    "a JSON array": (b"[1, 2]", "is not a checklist run file"),
    "not UTF-8": (b"\xff\xfe{}", "cannot read run file"),
    "a number": (b"7", "is not a checklist run file"),
    "items not a list": (_set("items", 5), "'items' is int, not list"),
    "an item that is a string": (_replace_item(1, "x"), "item 2 is str, not an object"),
    "a status that is a number": (_item(0, "status", 5), "item 1: 'status' is int, not str"),
    "an unknown status": (_item(0, "status", "exploded"), "item 1 has status 'exploded'"),
    "evidence as a list": (_item(0, "evidence", ["x"]), "item 1: 'evidence' is list, not dict"),
    "attempts as a bool": (_item(0, "attempts", True), "item 1: 'attempts' is bool, not int"),
    "version as text": (_set("checklist_version", "1"), "'checklist_version' is str, not int"),
    "a missing field": (lambda run: run.pop("sha256") and run, "run has no 'sha256'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_damaged_run_file_is_a_clear_error(cli, tmp_path: Path, case: str) -> None:
    path = write(tmp_path / "three.yaml", THREE)
    assert cli("checklist", "run", str(path), "--non-interactive").exit_code == 0
    (run_file,) = runs_dir(tmp_path).glob("*.json")
    run_id = run_file.stem
    damage, expected = CASES[case]
    if isinstance(damage, bytes):
        run_file.write_bytes(damage)
    else:
        run_file.write_text(json.dumps(damage(json.loads(run_file.read_text()))))
    for args in (
        ("status", run_id),
        ("report", run_id, "--format", "md"),
        ("run", str(path), "--non-interactive", "--resume", run_id),
    ):
        result = cli("checklist", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert "unexpected" not in result.stderr, (args, result.stderr)
        assert str(run_file) in result.stderr and expected in result.stderr, result.stderr
    listed = cli("checklist", "status", "--json")
    assert listed.exit_code == 0
    assert json.loads(listed.stdout) == []  # the damaged run is left out ...
    assert "Warning: skipped" in listed.stderr and expected in listed.stderr  # ... and named
