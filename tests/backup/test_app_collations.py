"""Databases whose schema uses the application's own collations and functions: SQLite cannot
run integrity_check on them anywhere else, which used to make verify call a good backup damaged.
Real damage must still fail."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import zstandard

from emrops.backup.integrity import integrity_problems
from tests.conftest import add_unknown_module_table


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
    except sqlite3.DatabaseError as exc:  # SQLite may stop at the damage (verify: FAILED)
        assert "malformed" in str(exc)
    else:
        assert not found.ok
        assert found.stand_ins  # it got past the missing names, then saw the damage
        assert "ok" not in found.problems
    finally:
        conn.close()


def test_a_damaged_backup_of_such_a_database_fails_verify(cli, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    _app_db(db)
    store, url = tmp_path / "store", f"sqlite:///{db}"
    assert cli("backup", "run", "--db", url, "--store", str(store)).exit_code == 0
    image = tmp_path / "image.db"
    (backup,) = [p for p in store.iterdir() if p.is_dir() and not p.name.startswith(".")]
    image.write_bytes(
        zstandard.ZstdDecompressor().decompress(
            (backup / "database.sqlite.zst").read_bytes(), max_output_size=1 << 30
        )
    )
    size = image.stat().st_size
    with open(image, "r+b") as f:
        f.seek(size // 2 - (size // 2) % 4096 + 8)
        f.write(b"\xff" * 64)
    from emrops.backup.stores import open_store
    from emrops.backup.verify import Checks, check_sqlite, load_manifest

    manifest = load_manifest(open_store(str(store), None), backup.name)
    checks = Checks()
    check_sqlite(image, manifest, checks)
    assert not checks.ok


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


def test_a_without_rowid_table_keyed_on_the_apps_collation(cli, tmp_path: Path) -> None:
    """count(*) of such a table needs the collation (the backup failed: 'cannot snapshot'), and
    integrity_check reports every row out of PRIMARY KEY order under a stand-in: excused (and
    more than the 100 lines SQLite reports by default, so none hides damage)."""
    db = tmp_path / "wr.db"
    conn = sqlite3.connect(db)
    conn.create_collation("REV", _reverse)
    conn.execute("CREATE TABLE k (code TEXT COLLATE REV PRIMARY KEY, v INT) WITHOUT ROWID")
    conn.executemany("INSERT INTO k VALUES (?, ?)", ((f"c{i:05d}", i) for i in range(3000)))
    conn.commit()
    conn.close()
    store, url = tmp_path / "store", f"sqlite:///{db}"
    backed = cli("backup", "run", "--db", url, "--store", str(store), "--json")
    assert backed.exit_code == 0, backed.output
    verified = cli("backup", "verify", "--latest", "--db", url, "--store", str(store))
    assert verified.exit_code == 0, verified.output
    assert "not checkable here: table k" in verified.output
    assert "1 tables, 3000 rows" in verified.output


def test_collation_names_in_sql() -> None:
    from emrops.db.appdefs import collations_in

    sql = (
        'CREATE TABLE t (a TEXT COLLATE LOCALIZED, b COLLATE "My Coll", c COLLATE nocase, '
        "d COLLATE [x], \"e COLLATE fake\" TEXT, f DEFAULT 'COLLATE nope') -- COLLATE hidden"
    )
    assert collations_in(sql) == ["LOCALIZED", "My Coll", "x"]


def test_a_virtual_table_of_a_module_only_the_app_loads(cli, tmp_path: Path) -> None:
    """count(*) of it fails ('no such module'), which failed the whole backup ('cannot
    snapshot'); it is left out of the row counts (its stored rows, if any, live in ordinary
    shadow tables, which are counted), and the backup verifies."""
    db = tmp_path / "vt.db"
    conn = sqlite3.connect(db)
    conn.executescript(
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT);
        INSERT INTO t (name) VALUES ('a'), ('b');
        CREATE VIRTUAL TABLE r USING rtree(id, minx, maxx);
        INSERT INTO r VALUES (1, 0.5, 2.5);
        """
    )
    conn.commit()
    conn.close()
    add_unknown_module_table(db)
    store, url = tmp_path / "store", f"sqlite:///{db}"
    backed = cli("backup", "run", "--db", url, "--store", str(store), "--json")
    assert backed.exit_code == 0, backed.output
    verified = cli("backup", "verify", "--latest", "--db", url, "--store", str(store), "--json")
    assert verified.exit_code == 0, verified.output
    import json

    manifest = json.loads(backed.stdout)
    counts = manifest.get("row_counts") or manifest["manifest"]["row_counts"]
    assert counts["t"] == 2 and "vx" not in counts and counts["r_rowid"] == 1
