"""Databases whose schema uses the application's own collations and functions: SQLite cannot
run integrity_check on them anywhere else, which used to make verify call a good backup damaged.
Real damage must still fail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from emrops.backup.integrity import integrity_problems


def _reverse(a: str, b: str) -> int:
    return (a < b) - (a > b)  # an order unlike the stand-in's, so index checks would trip


def _app_db(path: Path, rows: int = 3000) -> None:
    conn = sqlite3.connect(path)
    conn.create_collation("LOCALIZED", _reverse)
    conn.create_function("norm", 1, lambda s: s.strip().lower(), deterministic=True)
    conn.executescript(
        """
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT COLLATE LOCALIZED NOT NULL,
            note TEXT, CHECK (norm(name) <> ''));
        CREATE INDEX people_name ON people (name);
        CREATE INDEX people_norm ON people (norm(name));
        CREATE TABLE plain (id INTEGER PRIMARY KEY, v TEXT);
        CREATE INDEX plain_v ON plain (v);
        """
    )
    conn.executemany(
        "INSERT INTO people (name, note) VALUES (?, ?)",
        ((f"Name {i:05d}", "x" * 200) for i in range(rows)),
    )
    conn.executemany("INSERT INTO plain (v) VALUES (?)", ((f"v{i}",) for i in range(rows)))
    conn.commit()
    conn.close()


def test_a_schema_using_the_apps_collation_and_function_checks_ok(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    _app_db(db)
    conn = sqlite3.connect(db)
    try:
        found = integrity_problems(conn)
    finally:
        conn.close()
    assert found.ok, found.problems
    assert sorted(found.stand_ins) == ["collation LOCALIZED", "function norm"]
    assert found.excused  # the stand-ins did trip the index and CHECK checks ...
    assert "index people_name" in found.detail() and "plain" not in found.detail()


def test_damage_is_still_found_with_stand_ins(tmp_path: Path) -> None:
    """Bytes overwritten in the middle of the file (table and index pages): not excused."""
    db = tmp_path / "app.db"
    _app_db(db)
    size = db.stat().st_size
    with open(db, "r+b") as f:
        for at in (size // 3, size // 2, 2 * size // 3):
            f.seek(at - at % 4096 + 8)
            f.write(b"\xff" * 64)
    conn = sqlite3.connect(db)
    try:
        found = integrity_problems(conn)
    finally:
        conn.close()
    assert not found.ok
    assert found.stand_ins  # it got past the missing names, then saw the damage
    assert "ok" not in found.problems


def test_backup_of_such_a_database_verifies_and_restores(cli, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    _app_db(db, rows=200)
    store = tmp_path / "store"
    url = f"sqlite:///{db}"
    backed = cli("backup", "run", "--db", url, "--store", str(store))
    assert backed.exit_code == 0, backed.output
    verified = cli("backup", "verify", "--latest", "--db", url, "--store", str(store))
    assert verified.exit_code == 0, verified.output
    assert "collation LOCALIZED" in verified.output
    target = tmp_path / "restored.db"
    restored = cli(
        "backup",
        "restore",
        "--latest",
        "--source",
        url,
        "--store",
        str(store),
        "--target",
        str(target),
        "--yes",
    )
    assert restored.exit_code == 0, restored.output
    conn = sqlite3.connect(target)
    try:
        assert conn.execute("SELECT count(*) FROM people").fetchone()[0] == 200
    finally:
        conn.close()
