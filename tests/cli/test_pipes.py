"""Output that survives pipes and log shippers.

- stdout not a terminal: tables are a header row plus tab-separated rows, never truncated or
  wrapped, whatever the terminal width (golden files at COLUMNS=40 and 300, through a real
  pipe into another process).
- ``--log-format json``: every stderr line of a failing command is one JSON object, the last
  one the error (level, message, hint, exit_code, run_id), click's usage errors included.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.conftest import init_db

GOLDEN = Path(__file__).parent / "golden"


def piped(*args: str, columns: int, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run emrops with stdout into a pipe read by `cat`, as `emrops ... | cat` does."""
    child_env = {**os.environ, "COLUMNS": str(columns), **(env or {})}
    child_env.pop("FORCE_COLOR", None)
    producer = subprocess.Popen(
        [sys.executable, "-m", "emrops", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
        cwd=cwd,
    )
    assert producer.stdout is not None
    done = subprocess.run(["cat"], stdin=producer.stdout, capture_output=True, check=True)
    producer.stdout.close()
    _, err = producer.communicate(timeout=60)
    assert producer.returncode == 0, err.decode()
    return done.stdout.decode()


@pytest.mark.parametrize("columns", [40, 300])
def test_checklist_list_piped_matches_the_golden_file(tmp_path: Path, columns: int) -> None:
    out = piped("checklist", "list", columns=columns, cwd=tmp_path)
    assert out == (GOLDEN / "checklist-list.tsv").read_text()


@pytest.mark.parametrize("columns", [40, 300])
def test_checklist_show_piped_keeps_every_command_whole(tmp_path: Path, columns: int) -> None:
    out = piped("checklist", "show", "postgres-migration", columns=columns, cwd=tmp_path)
    lines = out.splitlines()
    assert lines[0] == "#\tid\ttitle\tkind\tcheck / when"
    assert all(line.count("\t") == 4 for line in lines)
    assert (
        "1.3\tbackup\tBack up the SQLite database and pin the backup\tauto\t"
        "emrops backup run --db ${SOURCE_DB_URL} --label pre-migration --pin"
    ) in lines


@pytest.mark.parametrize("columns", [40, 300])
def test_backup_list_piped_keeps_ids_whole(cli, tmp_path: Path, columns: int) -> None:
    url = f"sqlite:///{tmp_path / 'emrsim.db'}"
    init_db(url)
    store = tmp_path / "store"
    for _ in range(2):
        made = cli("backup", "run", "--db", url, "--store", str(store), "--json")
        assert made.exit_code == 0, made.stderr
    listing = cli("backup", "list", "--store", str(store), "--json")
    ids = [b["id"] for b in json.loads(listing.stdout)["backups"]]
    out = piped("backup", "list", "--store", str(store), columns=columns, cwd=tmp_path)
    # stdout is the table only: a header and one line per backup (notes go to stderr)
    header, *rows = out.splitlines()
    assert header.split("\t")[0] == "id" and "source" in header.split("\t")
    assert [row.split("\t")[0] for row in rows] == ids
    assert len({row.count("\t") for row in [header, *rows]}) == 1


def test_tsv_escapes_tabs_and_newlines_in_cells() -> None:
    from rich.table import Table

    from emrops.cli.render import table_tsv

    table = Table("name", "note")
    table.add_row("a\tb", "line1\nline2")
    table.add_row("[bold]x[/bold]", None)
    assert table_tsv(table) == "name\tnote\na\\tb\tline1\\nline2\nx\t\n"


FAILING = {
    "config": ["config", "show", "--bogus"],
    "sim": ["sim", "seed", "--sessions", "abc"],
    "backup": ["backup", "verify", "nope"],
    "checklist": ["checklist", "run", "nope"],
    "migrate-db": ["migrate-db", "plan", "--from", "sqlite:///nonexistent.db"],
    "provision": ["provision", "plan", "--env", "staging"],
    "deploy": ["deploy", "swap", "--bogus"],
    "benchmark": ["benchmark", "compare", "nofile1", "nofile2"],
    "schedule": ["schedule", "install"],
    "loadtest": ["loadtest", "compare", "a", "b"],
    "sockets": ["sockets", "probe", "--bogus"],
    "health": ["health", "--bogus"],
    "root": ["--bogus"],
    "group without command": ["backup"],
}


@pytest.mark.parametrize("group", list(FAILING))
def test_json_log_format_makes_every_stderr_line_json(cli, group: str) -> None:
    result = cli("--log-format", "json", *FAILING[group])
    assert result.exit_code != 0
    lines = result.stderr.splitlines()
    assert lines, "a failure says something"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    for entry in entries:
        assert isinstance(entry, dict)
        assert {"ts", "level", "message", "run_id"} <= set(entry)
    last = entries[-1]
    assert last["level"] == "error"
    assert isinstance(last["message"], str) and last["message"]
    assert "hint" in last and (last["hint"] is None or isinstance(last["hint"], str))
    assert last["exit_code"] == result.exit_code
    if group != "root":  # the root's own usage error comes before a run id exists
        assert last["run_id"]


def test_json_mode_from_the_environment_too(cli) -> None:
    result = cli("backup", "verify", "nope", env={"EMROPS_LOG_FORMAT": "json"})
    assert result.exit_code == 2
    (entry,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert entry["message"] == "invalid backup id 'nope'" and entry["exit_code"] == 2


def test_text_mode_errors_unchanged(cli) -> None:
    result = cli("backup", "verify", "nope")
    assert result.stderr.splitlines()[0] == "Error: invalid backup id 'nope'"
    assert result.stderr.splitlines()[1].startswith("Try: ")
