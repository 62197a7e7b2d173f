"""SIGKILL at several points of a run publishes nothing; a writer process during a backup."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from azure.storage.blob import BlobLeaseClient

from emrops.backup.stores import open_store
from emrops.config import load_settings
from tests.backup.conftest import json_of, listed, run_backup, seed

KILLER = textwrap.dedent("""
    import os, signal, sys
    from emrops.backup.run import RunOptions, run_backup
    from emrops.backup.stores import open_store
    from emrops.config import load_settings
    db, store, point = sys.argv[1:4]
    def progress(phase, done, total):
        if phase == point:
            os.kill(os.getpid(), signal.SIGKILL)
    run_backup(open_store(store, load_settings()), RunOptions(db_url=db), progress)
""")


@pytest.mark.parametrize("point", ["snapshot", "compress", "publish"])
def test_sigkill_publishes_nothing_and_next_run_succeeds(
    cli, seeded_sqlite: str, store: Path, point: str
) -> None:
    first = run_backup(cli, seeded_sqlite, store)["id"]
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, seeded_sqlite, str(store), point],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [e["id"] for e in listed(cli, store)] == [first]  # the killed run is not a backup
    if point == "compress":
        assert list(store.glob("*/.staging-*"))  # a half-written file was left behind
    if point == "publish":
        leftovers = [p.name for p in store.iterdir() if p.is_dir() and p.name != first]
        assert len(leftovers) == 1 and not (store / leftovers[0] / "manifest.json").exists()
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store), "--json")
    assert result.exit_code == 0, result.stderr
    assert "taking over a stale lock" in result.stderr and "backup run by pid" in result.stderr
    second = json.loads(result.stdout)["manifest"]["id"]
    assert [e["id"] for e in listed(cli, store)] == [first, second]
    assert sorted(p.name for p in store.iterdir() if p.name != ".lock") == [
        first,
        second,
    ]  # garbage gone
    assert not list(store.glob("*/.staging-*"))
    assert cli("backup", "verify", "--all", "--store", str(store)).exit_code == 0


def test_sigkill_on_azure_leaves_nothing_listed(cli, seeded_sqlite: str, azure_store: str) -> None:
    first = run_backup(cli, seeded_sqlite, azure_store)["id"]
    store = open_store(azure_store, load_settings())
    for point in ("compress", "publish"):
        proc = subprocess.run(
            [sys.executable, "-c", KILLER, seeded_sqlite, azure_store, point],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        assert [e["id"] for e in listed(cli, azure_store)] == [first]
        busy = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store)
        assert busy.exit_code == 75  # the dead run's lease lasts up to 60 s ...
        lease = BlobLeaseClient(store.container.get_blob_client("emrsim/.lock"))
        lease.break_lease(lease_break_period=0)  # ... here it expires at once
    orphans = [i for i in store.backup_ids() if i != first]
    assert len(orphans) == 1  # the run killed after its data was committed
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store, "--json")
    assert result.exit_code == 0, result.stderr
    assert "taking over a stale lock" in result.stderr
    second = json.loads(result.stdout)["manifest"]["id"]
    assert store.backup_ids() == [first, second]  # the orphan was cleaned up


WRITER = textwrap.dedent("""
    import os, sqlite3, sys, time
    path, stop = sys.argv[1:3]
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    session = conn.execute("SELECT id FROM sessions LIMIT 1").fetchone()[0]
    n = 0
    deadline = time.time() + 120
    while not os.path.exists(stop) and time.time() < deadline:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO messages (session_id, role, content, created_at, tokens) "
                     "VALUES (?, 'system', ?, '2026-01-01 00:00:00', 0)", (session, f"writer {n}"))
        conn.execute("INSERT INTO audit_log (at, actor, action) "
                     "VALUES ('2026-01-01 00:00:00.000000', 'writer', 'insert')")
        conn.execute("COMMIT")
        n += 1
    print(n)
""")


def test_backup_while_a_writer_keeps_inserting(
    cli, sqlite_url: str, store: Path, tmp_path: Path
) -> None:
    seed(sqlite_url, sessions=300, messages=40)
    path = sqlite_url.removeprefix("sqlite:///")
    stop = tmp_path / "stop"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, path, str(stop)], stdout=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            conn = sqlite3.connect(path, timeout=30)
            done = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
            conn.close()
            if done >= 50:
                break
            time.sleep(0.05)
        manifests = [run_backup(cli, sqlite_url, store) for _ in range(3)]
    finally:
        stop.touch()
        inserted = int(writer.communicate(timeout=60)[0])
    assert inserted > 100
    writes = [m["row_counts"]["audit_log"] for m in manifests]
    assert writes == sorted(writes) and writes[0] >= 50 and len(set(writes)) > 1  # writes went on
    for manifest in manifests:
        # each backup is one point in time: the writer's two inserts are in the same transaction
        assert manifest["row_counts"]["messages"] == 12_000 + manifest["row_counts"]["audit_log"]
        target = tmp_path / f"check-{manifest['id']}.db"
        done = json_of(
            cli(
                "backup",
                "restore",
                manifest["id"],
                "--target",
                str(target),
                "--yes",
                "--json",
                "--store",
                str(store),
            )
        )
        assert [c["name"] for c in done["verification"]["checks"] if c["ok"]] == [
            "checksum database.sqlite.zst",
            "integrity_check",
            "foreign_key_check",
            "row counts",
        ]
        conn = sqlite3.connect(target)
        system = conn.execute(
            "SELECT count(*) FROM messages WHERE content LIKE 'writer %'"
        ).fetchone()[0]
        conn.close()
        assert system == manifest["row_counts"]["audit_log"]
