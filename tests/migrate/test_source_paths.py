"""--from takes a sqlite:/// URL or the file's own path; a '?' or '#' in the file's name,
written raw in the URL, still names that file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from emrops.db.urls import sqlite_db_url


def _source(folder: Path) -> Path:
    folder.mkdir(parents=True)
    path = folder / "-app db.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t (v) VALUES ('a'), ('b')")
    conn.commit()
    conn.close()
    return path


def test_hostile_file_names_by_path_and_by_escaped_url(cli, tmp_path: Path, pg_url: str) -> None:
    path = _source(tmp_path / "we ird?dir#x%20é")
    raw = cli("migrate-db", "plan", "--from", f"sqlite:///{path}", "--to", pg_url, "--json")
    assert raw.exit_code == 0, raw.stdout + raw.stderr
    assert json.loads(raw.stdout)["rows"] == 2
    run = cli("migrate-db", "run", "--from", sqlite_db_url(path), "--to", pg_url)
    assert run.exit_code == 0, run.stdout + run.stderr
    verify = cli("migrate-db", "verify", "--from", str(path), "--to", pg_url)
    assert verify.exit_code == 0, verify.stdout + verify.stderr


def test_a_path_that_is_no_file_is_still_a_bad_url(cli, tmp_path: Path, pg_url: str) -> None:
    missing = cli("migrate-db", "plan", "--from", str(tmp_path / "nope.db"), "--to", pg_url)
    assert missing.exit_code == 2
    assert "invalid database URL" in missing.stderr
