"""migrate-db run outside a terminal: phases and per-table progress as lines (JSON events with
--log-format json), every stderr line parseable."""

from __future__ import annotations

import json
from pathlib import Path


def test_run_reports_phases_and_table_progress_as_json(cli, tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "app.db"
    seeded = cli("sim", "seed", "--db", f"sqlite:///{db}", "--sessions", "4", "--seed", "3")
    assert seeded.exit_code == 0, seeded.stderr
    result = cli(
        "--log-format", "json", "migrate-db", "run", "--from", f"sqlite:///{db}", "--to", pg_url
    )
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # all JSON
    progress = [e for e in events if e.get("event") == "progress"]
    tables = {e["table"] for e in progress}
    assert {"sessions", "messages"} <= tables
    done = [e for e in progress if e["table"] == "messages" and e["done"] == e["total"]]
    assert (
        done
        and done[-1]["message"] == f"copying messages: {done[-1]['total']}/{done[-1]['total']} rows"
    )
    assert any(e.get("event") != "progress" and e["level"] == "info" for e in events)  # phases
