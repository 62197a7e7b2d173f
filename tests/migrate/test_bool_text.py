"""BOOLEAN columns holding boolean text (Rails wrote 't'/'f' to SQLite; hand-written apps
'true'/'yes'/'on') are booleans, converted per value and verified; other text is an anomaly
with an example row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from emrops.migrate.convert import CONVERT, ConversionError
from tests.migrate.conftest import pg


def _db(path: Path, rows: list[tuple]) -> str:
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE flags (id INTEGER PRIMARY KEY, active boolean, admin BOOLEAN DEFAULT 'f')"
    )
    conn.executemany("INSERT INTO flags VALUES (?, ?, ?)", rows)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_boolean_text_migrates_as_booleans(cli, tmp_path: Path, pg_url: str) -> None:
    url = _db(
        tmp_path / "rails.db",
        [(1, "t", "f"), (2, "f", "TRUE"), (3, None, " yes "), (4, 1, "off"), (5, 0, "N")],
    )
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 0, plan.stdout + plan.stderr
    notes = json.loads(plan.stdout)["notes"]
    assert any("flags.admin: 5 boolean text value(s)" in n for n in notes), notes
    run = cli("migrate-db", "run", "--from", url, "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    with pg(pg_url) as conn:
        rows = conn.execute("SELECT active, admin FROM flags ORDER BY id").fetchall()
        default = conn.execute("INSERT INTO flags (id) VALUES (6) RETURNING admin").fetchone()
    assert rows == [(True, False), (False, True), (None, True), (True, False), (False, False)]
    assert default == (False,)
    with pg(pg_url) as conn:
        conn.execute("DELETE FROM flags WHERE id = 6")
    verify = cli("migrate-db", "verify", "--from", url, "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr


def test_other_text_in_a_boolean_column_is_an_anomaly_with_its_row(
    cli, tmp_path: Path, pg_url: str
) -> None:
    url = _db(tmp_path / "odd.db", [(1, "t", "f"), (2, "maybe", "f"), (3, 2, "t")])
    plan = cli("migrate-db", "plan", "--from", url, "--to", pg_url, "--json")
    assert plan.exit_code == 3, plan.stderr
    (bad,) = [a for a in json.loads(plan.stdout)["anomalies"] if a["condition"] == "bool_bad"]
    assert (bad["column"], bad["count"], bad["key"], bad["value"]) == (
        "active",
        2,
        {"rowid": 2},
        "maybe",
    )


def test_the_converter_reads_what_postgresql_reads() -> None:
    to_bool = CONVERT["bool"]
    for text, value in [("t", True), ("F", False), (" on ", True), ("0", False), ("Yes", True)]:
        assert to_bool(text) is value
    for bad in ("maybe", "", "2", 2, 0.0):
        try:
            to_bool(bad)
        except ConversionError:
            continue
        raise AssertionError(f"{bad!r} was converted")
