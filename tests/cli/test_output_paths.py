"""Output options (--out, --plot, --junit, the locustfile, the plan file) refuse a path that
cannot become a file before any work starts, and a write that fails anyway is an error naming
the file, never an "unexpected" one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from emrops import atomic
from emrops.errors import EmropsError, UsageError


def _bad_paths(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return {
        "a folder": (tmp_path, "is a folder"),
        "under a file": (a_file / "deeper" / "out.json", "is a file, not a folder"),
        "read-only folder": (locked / "out.json", "is not writable"),
    }


def test_check_file_path_names_each_problem(tmp_path: Path) -> None:
    for case, (path, words) in _bad_paths(tmp_path).items():
        if case == "read-only folder" and os.geteuid() == 0:
            continue  # root writes anywhere: the write itself decides
        with pytest.raises(UsageError, match=words):
            atomic.check_file_path(path)
    atomic.check_file_path(tmp_path / "new" / "deeper" / "ok.json")  # folders to be made: fine


def test_a_write_under_a_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(EmropsError, match="cannot write .*a-file/out.json"):
        atomic.write_text(a_file / "out.json", "{}")
    assert a_file.read_text() == "x"


@pytest.mark.parametrize(
    "args",
    [
        ("benchmark", "run", "--clients", "1", "--duration", "1s", "--warmup", "0s",
         "--repeat", "1", "--sessions", "5", "--plot", "{bad}"),
        ("benchmark", "run", "--clients", "1", "--duration", "1s", "--warmup", "0s",
         "--repeat", "1", "--sessions", "5", "--out", "{bad}"),
        ("loadtest", "export", "--format", "locust", "--out", "{bad}"),
    ],
)  # fmt: skip
def test_output_options_refuse_a_path_under_a_file_before_working(
    cli, tmp_path: Path, args: tuple[str, ...]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    bad = str(a_file / "out.png")
    db = tmp_path / "bench.db"
    full = [a.replace("{bad}", bad) for a in args]
    if full[0] == "benchmark":
        full[2:2] = ["--db", f"sqlite:///{db}"]
    started = time.monotonic()
    result = cli(*full)
    assert result.exit_code == 2, result.stderr
    assert "is a file, not a folder" in result.stderr and "unexpected" not in result.stderr
    assert time.monotonic() - started < 5  # refused up front, not after the run
    assert not db.exists()  # nothing was seeded


def test_checklist_docs_refuses_a_folder_under_a_file(cli, tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for bad in (a_file, a_file / "docs"):
        result = cli("checklist", "docs", "--dir", str(bad))
        assert result.exit_code == 2, result.stderr
        assert "is a file, not a folder" in result.stderr and "unexpected" not in result.stderr
    assert a_file.read_text() == "x"
