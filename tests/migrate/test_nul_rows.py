"""A NUL byte in a text value the plan holds for clean (``run`` leaves NUL bytes to the copy)
is a rejected row named by table and key under ``--on-error reject``, and aborts naming the row
otherwise: on the per-row path (psycopg refuses the value before sending it) and on the
SQL-built path, for rowid and WITHOUT ROWID tables (issue #16)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.migrate.conftest import pg, sha256

ROWS = 12_000  # more than one chunk of the SQL-built path

# ``stamp`` holds integer epochs (a per-row conversion), so table ``slow`` goes row by row
SCHEMA = """
CREATE TABLE fast (id INTEGER PRIMARY KEY, body TEXT NOT NULL, n INTEGER);
CREATE TABLE slow (id INTEGER PRIMARY KEY, body TEXT, stamp INTEGER);
CREATE TABLE kv (k TEXT NOT NULL, part INTEGER NOT NULL, v TEXT, PRIMARY KEY (k, part))
    WITHOUT ROWID;
"""
BAD = {"fast": 7000, "slow": 9001, "kv": 4321}


def _source(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany(
        "INSERT INTO fast VALUES (?, ?, ?)", [(i, f"note {i}\tx", i) for i in range(1, ROWS + 1)]
    )
    conn.executemany(
        "INSERT INTO slow VALUES (?, ?, ?)",
        [(i, f"s {i}", 1_700_000_000 + i) for i in range(1, ROWS)],
    )
    conn.executemany(
        "INSERT INTO kv VALUES (?, ?, ?)", [(f"k{i % 97}", i, f"v{i}") for i in range(ROWS)]
    )
    conn.execute("UPDATE fast SET body = 'a' || char(0) || 'b' WHERE id = ?", (BAD["fast"],))
    conn.execute("UPDATE slow SET body = 'c' || char(0) WHERE id = ?", (BAD["slow"],))
    conn.execute("UPDATE kv SET v = char(0) || 'z' WHERE part = ?", (BAD["kv"],))
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def casts(tmp_path: Path) -> Path:
    path = tmp_path / "casts.toml"
    path.write_text('[slow.stamp]\ntype = "timestamptz"\nepoch = "s"\n')
    return path


def test_nul_rows_are_rejected_by_key(cli, tmp_path: Path, pg_url: str, casts: Path) -> None:
    path = _source(tmp_path / "nul.db")
    before = sha256(path)
    src = f"sqlite:///{path}"
    args = ("migrate-db", "run", "--from", src, "--to", pg_url, "--cast", str(casts))
    r = cli(*args, "--on-error", "reject", "--json")
    assert "unexpected" not in r.stderr
    assert r.exit_code == 3, r.stderr  # rows were rejected
    data = json.loads(r.stdout)
    assert data["rejected"] == 3 and data["verify"]["problems"] == [], data
    lines = [json.loads(x) for x in Path(data["reject_file"]).read_text().splitlines()]
    by_table = {x["table"]: x for x in lines}
    assert sorted(by_table) == ["fast", "kv", "slow"]
    assert by_table["fast"]["key"] == BAD["fast"] and by_table["fast"]["column"] == "body"
    assert by_table["slow"]["key"] == BAD["slow"] and by_table["slow"]["column"] == "body"
    assert by_table["kv"]["key"] == {"k": f"k{BAD['kv'] % 97}", "part": BAD["kv"]}
    assert by_table["kv"]["column"] == "v"
    assert all("NUL" in x["error"] for x in lines), lines
    with pg(pg_url) as c:
        assert c.execute("SELECT count(*) FROM fast").fetchone()[0] == ROWS - 1
        assert c.execute("SELECT count(*) FROM slow").fetchone()[0] == ROWS - 2
        assert c.execute("SELECT count(*) FROM kv").fetchone()[0] == ROWS - 1
        assert c.execute("SELECT count(*) FROM kv WHERE part = %s", (BAD["kv"],)).fetchone()[0] == 0
    v = cli("migrate-db", "verify", "--from", src, "--to", pg_url, "--json")
    assert v.exit_code == 0, v.stdout
    assert sha256(path) == before


@pytest.mark.parametrize("table", ["slow", "kv"])
def test_nul_aborts_naming_the_row(
    cli, tmp_path: Path, pg_url: str, casts: Path, table: str
) -> None:
    path = _source(tmp_path / "nul.db")
    conn = sqlite3.connect(path)
    for other in BAD:
        if other != table:
            conn.execute(f"DROP TABLE {other}")
    conn.commit()
    conn.close()
    cast = ["--cast", str(casts)] if table == "slow" else []
    r = cli("migrate-db", "run", "--from", f"sqlite:///{path}", "--to", pg_url, *cast)
    assert r.exit_code == 3, r.stderr
    assert "unexpected" not in r.stderr
    key = f"rowid={BAD['slow']}" if table == "slow" else f"k='k{BAD['kv'] % 97}', part={BAD['kv']}"
    assert f"table {table}, row {key}, column" in r.stderr, r.stderr
    assert "NUL" in r.stderr and "--on-error reject" in r.stderr
