"""Invalid UTF-8 found while streaming: abort names the row, reject keeps every other row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.migrate.conftest import pg, sha256


def test_invalid_utf8_mid_stream_abort_then_resume_with_reject(
    cli, tmp_path: Path, pg_url: str
) -> None:
    path = tmp_path / "notes.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    conn.executemany(
        "INSERT INTO notes VALUES (?, ?)", [(i, f"note {i} ✓") for i in range(1, 12001)]
    )
    conn.execute("UPDATE notes SET body = CAST(x'6f6bff' AS TEXT) WHERE id = 7000")
    conn.commit()
    conn.close()
    before = sha256(path)
    src = f"sqlite:///{path}"
    r = cli("migrate-db", "run", "--from", src, "--to", pg_url)
    assert r.exit_code == 3, r.stderr
    assert "Error: table notes, row rowid=7000, column body: cannot convert 'ok\\\\xff'" in r.stderr
    with pg(pg_url) as c:  # nothing half-copied
        assert c.execute("SELECT count(*) FROM notes").fetchone()[0] == 0
    r = cli(
        "migrate-db",
        "run",
        "--from",
        src,
        "--to",
        pg_url,
        "--resume",
        "--on-error",
        "reject",
        "--json",
    )
    assert r.exit_code == 3, r.stderr
    data = json.loads(r.stdout)
    assert data["rejected"] == 1 and data["verify"]["problems"] == []
    line = json.loads(Path(data["reject_file"]).read_text().splitlines()[0])
    assert line == {
        "table": "notes",
        "key": 7000,
        "column": "body",
        "value": "'ok\\\\xff'",
        "error": "text is not valid UTF-8",
    }
    with pg(pg_url) as c:
        assert c.execute("SELECT count(*), min(id), max(id) FROM notes").fetchone() == (
            11999,
            1,
            12000,
        )
        assert c.execute("SELECT count(*) FROM notes WHERE id = 7000").fetchone()[0] == 0
    v = cli("migrate-db", "verify", "--from", src, "--to", pg_url, "--json")
    assert v.exit_code == 0, v.stdout
    assert json.loads(v.stdout)["tables"][0]["rejected"] == 1
    plan = cli("migrate-db", "plan", "--from", src, "--to", pg_url, "--json")
    assert plan.exit_code == 3
    assert json.loads(plan.stdout)["anomalies"][0]["key"] == {"rowid": 7000}
    assert sha256(path) == before
