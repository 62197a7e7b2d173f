"""Restore's safety net under writers and kills (follow-ups of issue #15).

* The safety backup is taken once maintenance is on, so every write a running app committed
  before the swap is in it: a writer that checks the flag in each write transaction (as the
  sim app does) runs through a whole restore, and each write it committed is either in the
  safety backup or in the restored database afterwards.
* A restore SIGKILLed once the flag is on leaves it on, with a message recording the state
  before; the rerun sets the flag back to that state (off, or on when it was on before).
* ``backup run`` with a missing source creates nothing (no store folder, no ``.lock``).
"""

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

from tests.backup.conftest import json_of, run_backup, seed

WRITER = textwrap.dedent(
    """
    import json, sqlite3, sys, time, os
    db, stop = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    n = 0
    while not os.path.exists(stop):
        n += 1
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("SELECT value FROM emrops_control WHERE key = 'maintenance'").fetchone()
        if row is not None and json.loads(row[0]).get("on"):
            conn.execute("ROLLBACK")
            print("refused", n, flush=True)
            time.sleep(0.002)
            continue
        conn.execute("INSERT INTO writes(n) VALUES (?)", (n,))
        conn.execute("COMMIT")
        print("committed", n, flush=True)
        time.sleep(0.001)  # like an app between requests: SQLite's lock is not fair, and a
        # writer that takes it back at once can starve restore's own write (maintenance on)
    """
)


def _writes(db: Path) -> set[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in conn.execute("SELECT n FROM writes")}
    finally:
        conn.close()


def _flag(db: Path) -> dict | None:  # type: ignore[type-arg]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT value FROM emrops_control WHERE key = 'maintenance'").fetchone()
    finally:
        conn.close()
    return json.loads(row[0]) if row else None


def _wait_for(ready, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``ready()`` (a busy machine starts the writer late)."""
    deadline = time.monotonic() + timeout
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.05)


def _app_db(path: Path, blob_rows: int = 0) -> str:
    url = seed(f"sqlite:///{path}", sessions=5, messages=2)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE writes(n INTEGER PRIMARY KEY)")
    if blob_rows:
        conn.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)")
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO blobs(data) SELECT randomblob(1000) FROM n",
            (blob_rows,),
        )
    conn.commit()
    conn.close()
    return url


def test_safety_backup_holds_every_write_committed_before_the_swap(cli, tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    store = tmp_path / "store"
    url = _app_db(db, blob_rows=3000)
    backup_id = run_backup(cli, url, store)["id"]
    stop = tmp_path / "stop"
    log = (tmp_path / "writer.log").open("w")  # a file, not a pipe: a full pipe stalls it
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(stop)], stdout=log)
    try:
        _wait_for(lambda: (tmp_path / "writer.log").read_text().count("committed") >= 20)
        done = json_of(
            cli(
                "backup", "restore", backup_id, "--target", str(db), "--force", "--yes",
                "--json", "--store", str(store),
            )
        )  # fmt: skip
        _wait_for(lambda: bool(_writes(db)))  # it goes on writing into the restored data
    finally:
        stop.touch()
        writer.wait(timeout=60)
        log.close()
    out = (tmp_path / "writer.log").read_text()
    assert writer.returncode == 0
    committed = {int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")}
    assert committed, "the writer must have written"
    after = _writes(db)
    safety = json_of(
        cli(
            "backup", "restore", done["safety_backup_id"], "--target", str(tmp_path / "s.db"),
            "--yes", "--json", "--store", str(store),
        )
    )  # fmt: skip
    assert safety["verification"]["ok"] is True
    in_safety = _writes(tmp_path / "s.db")
    lost = committed - in_safety - after
    assert not lost, f"{len(lost)} committed write(s) are in neither the safety backup nor after"
    assert after, ("the writer wrote into the restored data", out.splitlines()[-5:], _flag(db))
    # the safety backup ends where the restored data starts
    assert not in_safety or max(in_safety) < min(after)


def _kill_once_flag_on(args: list[str], db: Path, store: Path, tries: int = 5) -> None:
    """Start ``python -m emrops ARGS``; SIGKILL it once restore switched the flag on and its
    safety backup is published (so the kill lands in the swap or just before it)."""
    for _ in range(tries):
        before = len(list(store.glob("*/manifest.json")))
        proc = subprocess.Popen(
            [sys.executable, "-m", "emrops", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                on = (_flag(db) or {}).get("on")
            except sqlite3.Error:
                on = False
            if on and len(list(store.glob("*/manifest.json"))) > before:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if (_flag(db) or {}).get("on"):
                    return
                break
            time.sleep(0.001)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    pytest.fail("the restore always finished before it could be killed with the flag on")


@pytest.mark.parametrize("before", ["off", "on"])
def test_rerun_after_sigkill_sets_maintenance_back(cli, tmp_path: Path, before: str) -> None:
    db = tmp_path / "app.db"
    store = tmp_path / "store"
    url = _app_db(db, blob_rows=12_000)
    backup_id = run_backup(cli, url, store)["id"]
    if before == "on":
        assert cli("sim", "maintenance", "on", "--db", url).exit_code == 0
    args = ["backup", "restore", backup_id, "--target", str(db), "--store", str(store)]
    _kill_once_flag_on([*args, "--force", "--yes"], db, store)
    flag = _flag(db)
    assert flag is not None and flag["on"] is True
    assert flag["message"] == f"restoring backup {backup_id}; maintenance was {before} before"

    plan = cli(*args, "--dry-run")
    assert plan.exit_code == 0
    assert f"maintenance {before} afterwards (as it was before the interrupted" in " ".join(
        plan.stderr.split()
    )
    rerun = subprocess.run(
        [sys.executable, "-m", "emrops", *args, "--force", "--yes"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "left on by the interrupted restore" in " ".join(rerun.stderr.split())
    assert (_flag(db) or {"on": False})["on"] is (before == "on")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM blobs").fetchone()[0] == 12_000
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_backup_run_with_a_missing_source_creates_nothing(cli, tmp_path: Path) -> None:
    store = tmp_path / "store"
    for db in (f"sqlite:///{tmp_path / 'missing.db'}", str(tmp_path / "nope" / "x.db")):
        result = cli("backup", "run", "--db", db, "--store", str(store))
        assert result.exit_code in (1, 2), result.stderr
        assert result.stderr.startswith("Error: ") and "Traceback" not in result.stderr
        assert not store.exists(), sorted(p.name for p in tmp_path.rglob("*"))
    pg = "postgresql+psycopg://postgres@127.0.0.1/emrops_no_such_database_xyz"
    result = cli("backup", "run", "--db", pg, "--store", str(store))
    assert result.exit_code == 1 and "Error: " in result.stderr, result.stderr
    assert not store.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _pg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_postgres_switch_on_waits_for_writes_in_flight_without_a_flag_row(pg_url: str) -> None:
    """A fresh EMRsim database has no maintenance row: a write's FOR SHARE read of the flag
    locks no row, so switching maintenance on used to commit under a write in flight, which
    then committed after it (and after a safety backup taken at that point)."""
    import threading

    import psycopg

    from emrops.db.control import set_maintenance
    from emrops.db.engine import create_engine

    seed(pg_url, sessions=1, messages=1)
    with psycopg.connect(_pg(pg_url), autocommit=True) as setup:
        setup.execute("CREATE TABLE writes(n int PRIMARY KEY)")
    writer = psycopg.connect(_pg(pg_url))
    engine = create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        row = writer.execute(
            "SELECT value FROM emrops_control WHERE key = 'maintenance' FOR SHARE"
        ).fetchone()
        assert row is None  # no flag row yet: the write goes ahead
        switched = threading.Event()
        thread = threading.Thread(
            target=lambda: (set_maintenance(engine, True, "x"), switched.set()), daemon=True
        )
        thread.start()
        assert not switched.wait(1.0), "maintenance went on under a write in flight"
        writer.execute("INSERT INTO writes VALUES (1)")
        writer.commit()
        thread.join(10)
        assert switched.is_set()
    finally:
        writer.close()
        engine.dispose()


PG_WRITER = textwrap.dedent(
    """
    import json, sys, time, os, psycopg
    url, stop = sys.argv[1], sys.argv[2]
    conn = psycopg.connect(url)
    n = 0
    while not os.path.exists(stop):
        n += 1
        try:
            row = conn.execute(
                "SELECT value FROM emrops_control WHERE key = 'maintenance' FOR SHARE"
            ).fetchone()
            value = row[0] if row else None
            if isinstance(value, str):
                value = json.loads(value)
            if value and value.get("on"):
                conn.rollback()
                print("refused", n, flush=True)
                time.sleep(0.002)
                continue
            conn.execute("INSERT INTO writes VALUES (%s)", (n,))
            conn.commit()
            print("committed", n, flush=True)
        except psycopg.Error as exc:  # the restore replaced the table under us
            conn.rollback()
            print("error", n, type(exc).__name__, flush=True)
            time.sleep(0.01)
    """
)


def test_postgres_safety_backup_holds_every_committed_write(
    cli, pg_url: str, tmp_path: Path
) -> None:
    import psycopg

    seed(pg_url, sessions=3, messages=2)
    with psycopg.connect(_pg(pg_url), autocommit=True) as setup:
        setup.execute("CREATE TABLE writes(n int PRIMARY KEY)")
    store = tmp_path / "store"
    backup_id = run_backup(cli, pg_url, store)["id"]
    stop = tmp_path / "stop"
    log = (tmp_path / "writer.log").open("w")  # a file, not a pipe: a full pipe stalls it
    writer = subprocess.Popen([sys.executable, "-c", PG_WRITER, _pg(pg_url), str(stop)], stdout=log)
    env = {"EMROPS_DB_URL": pg_url}
    try:
        time.sleep(0.5)
        done = json_of(
            cli(
                "backup", "restore", backup_id, "--target", pg_url, "--force", "--yes",
                "--json", "--store", str(store), env=env,
            )
        )  # fmt: skip
        time.sleep(0.3)
    finally:
        stop.touch()
        writer.wait(timeout=60)
        log.close()
    out = (tmp_path / "writer.log").read_text()
    committed = {int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")}
    assert committed and any(line.startswith("refused") for line in out.splitlines())
    with psycopg.connect(_pg(pg_url)) as conn:
        after = {r[0] for r in conn.execute("SELECT n FROM writes")}
    safety_db = pg_url.rsplit("/", 1)[1] + "_s"
    safety_url = pg_url.rsplit("/", 1)[0] + "/" + safety_db
    try:
        restored = cli(
            "backup", "restore", done["safety_backup_id"], "--target", safety_url, "--yes",
            "--store", str(store), env=env,
        )  # fmt: skip
        assert restored.exit_code == 0, restored.stderr
        with psycopg.connect(_pg(safety_url)) as conn:
            in_safety = {r[0] for r in conn.execute("SELECT n FROM writes")}
    finally:
        from tests.conftest import drop_pg_database

        drop_pg_database(safety_db)
    lost = committed - in_safety - after
    assert not lost, f"{len(lost)} committed write(s) are in neither the safety backup nor after"


def test_a_locked_target_is_never_moved_aside(cli, tmp_path: Path) -> None:
    """A target another process keeps locked (here: an EXCLUSIVE transaction on a
    rollback-journal file) used to be taken for "not a readable database" and moved aside,
    its writers going on in the moved file. Now restore refuses, the file unchanged."""
    db = tmp_path / "app.db"
    store = tmp_path / "store"
    url = _app_db(db)
    backup_id = run_backup(cli, url, store)["id"]
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode = DELETE").fetchall()
    conn.close()
    inode = db.stat().st_ino
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(60)",
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        result = cli(
            "backup", "restore", backup_id, "--target", str(db), "--force", "--yes",
            "--store", str(store),
        )  # fmt: skip
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 1, result.stderr
    assert "stayed locked by another process; nothing was changed" in " ".join(
        result.stderr.split()
    )
    assert "Traceback" not in result.stderr
    assert db.stat().st_ino == inode
    assert not list(tmp_path.glob("app.db.before-restore-*"))
