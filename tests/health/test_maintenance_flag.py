"""`health` and a maintenance flag left on. A restore or migration killed before it could set
the flag back leaves every instance answering writes with 503; the database check said
"reachable" and health exited 0. It now fails naming the flag's message and since when."""

from __future__ import annotations

import json
from pathlib import Path

SKIP = [
    "--skip",
    "sim_health",
    "--skip",
    "sim_ready",
    "--skip",
    "backup_age",
    "--skip",
    "scheduler",
]


def _database(cli, url: str) -> tuple[int, dict]:
    result = cli("health", "--db", url, "--json", *SKIP)
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    return result.exit_code, checks["database"]


def test_a_flag_left_on_fails_the_database_check(cli, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert cli("sim", "init-db", "--db", url).exit_code == 0
    code, check = _database(cli, url)
    assert code == 0 and check["ok"]
    on = cli("sim", "maintenance", "on", "--db", url, "--message", "restoring backup 2026X")
    assert on.exit_code == 0, on.stderr
    code, check = _database(cli, url)
    # before: exit 0, "reachable, revision 0001_initial"
    assert code == 3 and not check["ok"]
    assert "maintenance mode is ON since" in check["detail"]
    assert "restoring backup 2026X" in check["detail"]
    assert "emrops sim maintenance off" in check["detail"]
    assert cli("sim", "maintenance", "off", "--db", url).exit_code == 0
    assert _database(cli, url)[0] == 0


def test_a_database_without_the_emrsim_schema_is_still_only_reachable(cli, tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (a)").connection.commit()
    code, check = _database(cli, f"sqlite:///{path}")
    assert code == 0 and check["ok"] and "revision none" in check["detail"]
