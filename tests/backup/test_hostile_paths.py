"""Hostile paths: every command opens exactly the file it was given (issue #15 item 1).

Folder and file names hold ``#``, ``?``, ``%``, spaces, quotes, newlines, unicode, or reach the
file through a symlink. For each: backup run (source and store), verify, restore into a new
target, ``restore --force`` over it (its safety backup is of the named target), health and
migrate-db plan. Each asserts the row counts and that no file appeared outside the paths named.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
from pathlib import Path

import pytest

from emrops.db.urls import sqlite_db_url
from tests.backup.conftest import json_of, run_backup

HOSTILE = {
    "hash": "a#b",
    "question": "q?mode=rwc&x=1",
    "percent": "p%41%2F%",
    "space": "sp ace",
    "quotes": "quo'te\"",
    "newline": "new\nline",
    "unicode": "ünï©ødé-日本",
    "brackets": "[x]`y`",
}
ROWS = {"patients": 37, "notes": 5}


def make_db(path: Path, wal: bool = True) -> dict[str, int]:
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    for table, n in ROWS.items():
        conn.execute(f"CREATE TABLE {table}(id INTEGER PRIMARY KEY, body TEXT)")
        conn.executemany(
            f"INSERT INTO {table}(body) VALUES (?)", [(f"{table} {i} " * 20,) for i in range(n)]
        )
    conn.commit()
    conn.close()
    return dict(ROWS)


def counts(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in ROWS}
    finally:
        conn.close()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def appeared_outside(before: set[str], after: set[str], *allowed: str) -> set[str]:
    """New entries not under one of the ``allowed`` relative folders/files."""
    return {
        new
        for new in after - before
        if not any(new == a or new.startswith(a + "/") for a in allowed)
    }


@pytest.fixture
def tmpdir_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    scratch = tmp_path / "tmp #dir?%"  # scratch copies live here: hostile too
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # gettempdir() caches its answer
    return scratch


def source_for(tmp_path: Path, key: str) -> tuple[Path, Path]:
    """(the path named on the command line, the real file): a symlinked folder for "symlink"."""
    if key == "symlink":
        real = tmp_path / "real dir#1"
        real.mkdir()
        link = tmp_path / "link?x"
        link.symlink_to(real, target_is_directory=True)
        return link / "app.db", real / "app.db"
    folder = tmp_path / HOSTILE[key]
    folder.mkdir()
    path = folder / f"{HOSTILE[key]}.db"
    return path, path


@pytest.mark.parametrize("key", [*HOSTILE, "symlink"])
def test_backup_verify_restore_on_hostile_paths(
    cli, tmp_path: Path, tmpdir_env: Path, key: str
) -> None:
    named, real = source_for(tmp_path, key)
    expected = make_db(real)
    store = tmp_path / "store" / (HOSTILE.get(key, "plain") + " st#ore?")
    store.parent.mkdir()
    before = tree(tmp_path)

    manifest = run_backup(cli, sqlite_db_url(named), store)
    assert manifest["row_counts"] == expected
    assert manifest["files"][0]["raw_size"] > 4096  # not the image of an empty database
    verified = json_of(cli("backup", "verify", manifest["id"], "--store", str(store), "--json"))
    assert verified[0]["ok"] is True
    rel_store = str(store.relative_to(tmp_path))
    # the source's own WAL sidecars may appear (a WAL reader needs them); nothing else may
    sidecars = [str(real.relative_to(tmp_path)) + s for s in ("-wal", "-shm")]
    assert appeared_outside(before, tree(tmp_path), rel_store, *sidecars) == set()
    assert list(tmpdir_env.iterdir()) == []  # verify's scratch is gone

    # restore into a new hostile target given as a plain path
    target_dir = tmp_path / "restored" / HOSTILE.get(key, "sym")
    target_dir.mkdir(parents=True)
    target = target_dir / f"{HOSTILE.get(key, 'sym')}-target.db"
    before = tree(tmp_path)
    result = cli(
        "backup", "restore", manifest["id"], "--target", str(target), "--store", str(store),
        "--yes", "--json",
    )  # fmt: skip
    restored = json_of(result)
    assert restored["safety_backup_id"] is None
    assert counts(target) == expected
    rel_target = str(target.relative_to(tmp_path))
    allowed = [rel_store, rel_target, *sidecars, *(rel_target + s for s in ("-wal", "-shm"))]
    assert appeared_outside(before, tree(tmp_path), *allowed) == set()

    # --force over it: the safety backup is a backup of exactly that target
    conn = sqlite3.connect(target)
    conn.execute("DELETE FROM notes WHERE id > 2")
    conn.commit()
    conn.close()
    before = tree(tmp_path)
    restored = json_of(
        cli(
            "backup",
            "restore",
            manifest["id"],
            "--target",
            str(target),
            "--store",
            str(store),
            "--force",
            "--yes",
            "--json",
        )  # fmt: skip
    )
    safety = json.loads((store / restored["safety_backup_id"] / "manifest.json").read_text())
    assert safety["row_counts"] == {"patients": 37, "notes": 2}
    assert counts(target) == expected
    assert appeared_outside(before, tree(tmp_path), *allowed) == set()
    assert list(tmpdir_env.iterdir()) == []


def test_the_issue_example_hash_in_a_raw_url(cli, tmp_path: Path, tmpdir_env: Path) -> None:
    """/srv/a#b/app.db given as sqlite:////srv/a#b/app.db: 1,000 rows, not an empty backup."""
    folder = tmp_path / "a#b"
    folder.mkdir()
    path = folder / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(x)")
    conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    conn.commit()
    conn.close()
    before = tree(tmp_path)
    manifest = run_backup(cli, f"sqlite:///{path}", tmp_path / "store")
    assert manifest["row_counts"] == {"t": 1000}
    assert appeared_outside(before, tree(tmp_path), "store") == set()
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("key", ["hash", "question", "newline", "symlink"])
def test_health_and_migrate_plan_read_the_named_file(
    cli, tmp_path: Path, tmpdir_env: Path, pg_url: str, key: str
) -> None:
    named, real = source_for(tmp_path, key)
    make_db(real)
    before = tree(tmp_path)
    skip = [a for c in ("sim_health", "sim_ready", "backup_age", "disk_space", "scheduler")
            for a in ("--skip", c)]  # fmt: skip
    health = cli("health", "--db", sqlite_db_url(named), *skip, "--json")
    assert health.exit_code == 0, (health.stdout, health.stderr)
    database = next(c for c in json.loads(health.stdout)["checks"] if c["name"] == "database")
    assert database["ok"] is True
    plan = cli(
        "migrate-db", "plan", "--from", sqlite_db_url(named),
        "--to", pg_url, "--json",
    )  # fmt: skip
    assert plan.exit_code == 0, (plan.stdout, plan.stderr)
    planned = {t["source"]: t for t in json.loads(plan.stdout)["tables"]}
    assert set(planned) == set(ROWS)
    # nothing created but the source's own WAL sidecars
    sidecars = [str(real.relative_to(tmp_path)) + s for s in ("-wal", "-shm")]
    assert appeared_outside(before, tree(tmp_path), *sidecars) == set()
