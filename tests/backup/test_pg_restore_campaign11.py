"""Session 11 failure-injection campaign on PostgreSQL backup and restore: regression tests of
the defects found. Real PostgreSQL, the real CLI in a subprocess, real signals; pg_dump,
pg_restore and psql are replaced on PATH (where emrops looks for them) by stand-ins that pause
at a chosen point or misbehave, then run the real tool."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.backup.campaign11_pg_tools import (
    children,
    fake_tool,
    finish,
    flag,
    rows,
    stand_ins,
    start,
    url,
    wait_for,
)
from tests.backup.conftest import emrops_proc, seed
from tests.conftest import _admin_connect, create_pg_database, drop_pg_database

COUNT = "SELECT count(*) FROM messages"
ROWS = 1800  # messages in the backup (a restore script of some 300 KB: more than pipes hold)


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, str]]:
    """A seeded database, a store holding one backup of it, and that backup's id."""
    name = create_pg_database("emrops_c11_src")
    try:
        seed(url(name), sessions=60, messages=30)
        store = tmp_path_factory.mktemp("c11") / "store"
        done = emrops_proc("backup", "run", "--db", url(name), "--store", str(store), "--json")
        assert done.returncode == 0, done.stderr
        yield name, store, json.loads(done.stdout)["manifest"]["id"]
    finally:
        drop_pg_database(name)


@pytest.fixture
def target(backed_up: tuple[str, Path, str], tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(target database, store, backup id): a copy of the backed-up database with 10 rows
    fewer than the backup, and a copy of the store of its own."""
    source, store, backup_id = backed_up
    name = f"emrops_c11_{uuid.uuid4().hex[:12]}"
    with _admin_connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    try:
        rows(name, "DELETE FROM messages WHERE id IN (SELECT id FROM messages LIMIT 10)")
        mine = tmp_path / "store"
        shutil.copytree(store, mine)
        yield name, str(mine), backup_id
    finally:
        drop_pg_database(name)


def _backups(store: str) -> list[str]:
    return sorted(p.name for p in Path(store).iterdir() if (p / "manifest.json").exists())


def _restore(backup_id: str, name: str, store: str) -> list[str]:
    return ["backup", "restore", backup_id, "--target", url(name), "--store", store, "--yes"]


@pytest.mark.parametrize(
    ("stage", "sig"),
    [
        ("restore", signal.SIGINT),
        ("restore", signal.SIGTERM),
        ("safety", signal.SIGTERM),
        ("safety", signal.SIGHUP),
    ],
)
def test_ctrl_c_or_sigterm_mid_restore_cleans_up_and_says_what_the_target_holds(
    target, tmp_path, stage, sig
) -> None:
    """SIGINT to emrops alone (not its process group) in the restore transaction hung for
    ever: emrops, setting the flag back, waited for the lock its own psql held, psql waited
    for the rest of the script. SIGTERM ended emrops on the spot, maintenance left on without
    a word (and the partial safety backup was not removed); SIGHUP (terminal closed) too. Now
    each ends psql (the server rolls back), sets the flag back and exits 130 saying what the
    target holds."""
    name, store, backup_id = target
    env = stand_ins(tmp_path / "bin") | {"C11_SLEEP": "5"}
    if stage == "restore":
        env |= {"C11_MID_pg_restore": "-f - ", "C11_BYTES": "20000"}
        marker = tmp_path / "bin" / "mark.pg_restore"
    else:
        env |= {"C11_PAUSE_pg_dump": "--snapshot"}
        marker = tmp_path / "bin" / "mark.pg_dump"
    proc = start(*_restore(backup_id, name, store), "--force", env=env)
    wait_for(marker, proc)
    proc.send_signal(sig)
    code, err = finish(proc, timeout=30)
    assert code == 130, (code, err)
    said = {
        "restore": "stopped during the restore, whose transaction was rolled back: the target "
        "holds what it held before",
        "safety": "stopped during the safety backup, before the target's data was changed",
    }[stage]
    assert f"Error: interrupted: the restore of {backup_id} into {url(name)} {said}" in err
    assert "; maintenance is off, as before" in err and "Try: run the restore again" in err
    assert "Traceback" not in err
    assert rows(name, COUNT) == [(ROWS - 10,)]  # unchanged
    assert flag(name) == {"on": False, "message": ""}  # set back
    # the safety backup, complete, or none (not one half-written)
    assert len(_backups(store)) == (2 if stage == "restore" else 1)


def test_a_run_killed_while_verifying_leaves_a_scratch_database_the_next_run_drops(
    target, tmp_path
) -> None:
    """SIGKILL while the backup is restored into its scratch database (emrops_verify_*)
    left that database on the server for good. Now each run drops those no live run holds
    (the run using one holds an advisory lock for as long as it exists)."""
    name, store, backup_id = target
    env = stand_ins(tmp_path / "bin") | {"C11_PAUSE_pg_restore": "emrops_verify_"}
    proc = start(*_restore(backup_id, name, store), "--force", env=env | {"C11_SLEEP": "20"})
    wait_for(tmp_path / "bin" / "mark.pg_restore", proc)
    scratch = [
        arg.rsplit("/", 1)[1]
        for _pid, args in children(proc.pid)
        for arg in args.split()
        if "/emrops_verify_" in arg
    ][0]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        assert rows("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{scratch}'")
        done = emrops_proc(*_restore(backup_id, name, store), "--force", timeout=60)
        assert done.returncode == 0, done.stderr
        assert not rows("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{scratch}'")
        assert rows(name, COUNT) == [(ROWS,)]
    finally:
        drop_pg_database(scratch)


@pytest.mark.parametrize("tool", ["pg_restore", "psql"])
def test_a_restore_tool_killed_mid_restore_is_named_and_the_target_is_unchanged(
    target, tmp_path, tool
) -> None:
    """pg_restore killed part-way through the script: emrops wrote ROLLBACK into psql's
    input, in the middle of COPY data, and reported psql's "invalid input syntax ...
    ROLLBACK;" (exit 3) as the cause. psql killed: "failed (exit -9), target unchanged: " and
    nothing after. Now the tool and the signal are named; still rolled back, flag set back."""
    name, store, backup_id = target
    env = stand_ins(tmp_path / "bin") | {
        "C11_MID_pg_restore": "-f - ",
        "C11_BYTES": "20000",
        "C11_SLEEP": "1",
    }
    proc = start(*_restore(backup_id, name, store), "--force", env=env)
    wait_for(tmp_path / "bin" / "mark.pg_restore", proc)
    for pid, args in children(proc.pid):
        if args.split()[0].endswith("/" + tool):
            os.kill(pid, signal.SIGKILL)
    code, err = finish(proc, timeout=30)
    assert code == 1, (code, err)
    assert f"Error: pg_restore into {url(name)} failed (exit " in err
    assert f"target unchanged: {tool} was killed by SIGKILL" in err
    assert "invalid input syntax" not in err and "Traceback" not in err
    assert rows(name, COUNT) == [(ROWS - 10,)]
    assert flag(name) == {"on": False, "message": ""}


def test_the_maintenance_flag_comes_back_in_the_restores_own_commit(target, tmp_path) -> None:
    """Maintenance was on (an operator's), the backup's flag off. The flag was set back
    after the restore committed, in a connection of its own: a kill (or a lost connection)
    between the two left the backup's flag, off, and the apps taking writes, without a word.
    Now the restore's transaction sets the flag back before its COMMIT."""
    name, store, backup_id = target
    rows(
        name,
        "INSERT INTO emrops_control VALUES ('maintenance', "
        """'{"on": true, "message": "planned work"}', now())""",
    )
    env = stand_ins(tmp_path / "bin", psql_after=True) | {"C11_SLEEP": "10"}
    proc = start(*_restore(backup_id, name, store), "--force", env=env)
    wait_for(tmp_path / "bin" / "mark.psql-done", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert rows(name, COUNT) == [(ROWS,)]  # committed
    assert flag(name) == {"on": True, "message": "down for maintenance"}


def test_a_read_only_target_is_refused_before_anything(target, cli) -> None:
    """A target with default_transaction_read_only (as a hot standby answers) failed after
    verifying the backup, at the flag, with the bare "cannot execute UPDATE in a read-only
    transaction". Now it is refused first, even with --force, with what to do."""
    name, store, backup_id = target
    with _admin_connect() as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    done = cli(*_restore(backup_id, name, store), "--force")
    assert done.exit_code == 1, done.stderr
    assert (
        f"Error: restore refused, even with --force: {url(name)} is read-only: "
        "default_transaction_read_only is on for it"
    ) in done.stderr
    assert "Try: restore into the primary server" in done.stderr
    assert _backups(store) == [backup_id]  # no safety backup either
    assert rows(name, COUNT) == [(ROWS - 10,)]
    planned = cli(*_restore(backup_id, name, store), "--dry-run")
    assert planned.exit_code == 0, planned.stderr
    assert f"  1. REFUSED, even with --force: {url(name)} is read-only" in planned.stderr


@pytest.fixture
def small_tablespace() -> Iterator[str]:
    """A 20 MB tmpfs tablespace (skipped where mounting is not permitted)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    folder = Path(f"/var/tmp/emrops-ts-{uuid.uuid4().hex[:10]}")
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    name = f"emrops_c11_ts_{uuid.uuid4().hex[:8]}"
    try:
        shutil.chown(folder, "postgres", "postgres")
        with _admin_connect() as conn:
            conn.execute(f"CREATE TABLESPACE {name} LOCATION '{folder}'")
        yield name
    finally:
        with _admin_connect() as conn:
            conn.execute(f"DROP TABLESPACE IF EXISTS {name}")
        subprocess.run(["umount", str(folder)], check=False)
        folder.rmdir()


def test_disk_full_in_the_restore_says_so_and_rolls_back(small_tablespace, tmp_path) -> None:
    """PostgreSQL running out of disk mid-restore (SQLSTATE 53100) rolled back, but the error
    had no hint. Now it says the disk is full, that the space is free again, what to do."""
    source = create_pg_database("emrops_c11_big")
    dest = f"emrops_c11_full_{uuid.uuid4().hex[:8]}"
    try:
        rows(
            source,
            "CREATE TABLE big AS SELECT g AS id, repeat(md5(g::text), 4) AS body "
            "FROM generate_series(1, 200000) g",
        )
        store = str(tmp_path / "store")
        backup = emrops_proc("backup", "run", "--db", url(source), "--store", store, "--json")
        assert backup.returncode == 0, backup.stderr
        backup_id = json.loads(backup.stdout)["manifest"]["id"]
        with _admin_connect() as conn:
            conn.execute(f'CREATE DATABASE "{dest}" TABLESPACE {small_tablespace}')
        done = emrops_proc(*_restore(backup_id, dest, store), timeout=120)
        assert done.returncode == 1, done.stderr
        assert "No space left on device" in done.stderr and "target unchanged" in done.stderr
        assert "Try: PostgreSQL's disk is full (the restore was rolled back" in done.stderr
        assert "Traceback" not in done.stderr
        assert rows(dest, "SELECT to_regclass('big')") == [(None,)]
    finally:
        drop_pg_database(dest)
        drop_pg_database(source)


def _server_major() -> int:
    return int(rows("postgres", "SHOW server_version_num")[0][0]) // 10000  # type: ignore[call-overload]


@pytest.mark.parametrize("kind", ["older", "garbage", "nothing", "cut short"])
def test_a_pg_dump_that_misbehaves_publishes_nothing(target, tmp_path, kind) -> None:
    """A pg_dump first on PATH that exits 0 having written garbage, nothing or an archive cut
    short: the backup was published (exit 0) and only `backup verify` could tell. One that
    reports a version older than the server was used as is. Now each is an error (exit 1)
    saying what pg_dump did, and nothing is published."""
    name, store, backup_id = target
    real = shutil.which("pg_dump")
    version = f'if [ "$1" = --version ]; then exec {real} --version; fi\n'
    body = {
        "older": f'if [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) '
        f'{_server_major() - 1}.3"; exit 0; fi\nexec {real} "$@"',
        "garbage": version + "echo 'not an archive'; exit 0",
        "nothing": version + "exit 0",
        "cut short": version + f'{real} "$@" | head -c 20000; exit 0',
    }[kind]
    env = fake_tool(tmp_path / "bin", "pg_dump", body)
    done = emrops_proc("backup", "run", "--db", url(name), "--store", store, env=env)
    assert done.returncode == 1, done.stderr
    where = tmp_path / "bin" / "pg_dump"
    said = {
        "older": f"Error: pg_dump {_server_major() - 1} ({where}) is older than the server "
        f"({_server_major()}): it cannot dump it",
        "garbage": f"Error: pg_dump ({where}) of {url(name)} exited 0 but wrote no archive "
        "(it began b'not a')",
        "nothing": f"Error: pg_dump ({where}) of {url(name)} exited 0 but wrote nothing",
        "cut short": f"Error: pg_dump ({where}) of {url(name)} exited 0 but its archive is not "
        "whole (20000 bytes; pg_restore reading it said: pg_restore: error: could not read "
        "from input file: end of file)",
    }[kind]
    assert said in done.stderr
    assert "Try: " in done.stderr and "Traceback" not in done.stderr
    assert _backups(store) == [backup_id]


def test_a_backup_behind_a_table_lock_is_bounded_retried_or_names_it(target, tmp_path) -> None:
    """An ALTER TABLE queued after the snapshot's row counts (which hold ACCESS SHARE on every
    table until pg_dump ends) and before pg_dump's own LOCK TABLE: pg_dump (lock_timeout 0)
    queued behind the ALTER, the ALTER behind the snapshot, the snapshot waited for pg_dump:
    a hang the server cannot see as a deadlock. Now pg_dump gets --lock-wait-timeout (the
    database's lock_timeout, else 30s); once it gives up, the ALTER goes through and a new
    snapshot is dumped: the backup is published, with a warning, and verifies. A table locked
    before the backup began: the count waited without bound and, with a lock_timeout, failed
    with no hint; now it fails in that time naming the session."""
    name, store, backup_id = target
    with _admin_connect() as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '2s'")
    env = stand_ins(tmp_path / "bin") | {"C11_PAUSE_pg_dump": "--snapshot", "C11_SLEEP": "1"}
    proc = start("backup", "run", "--db", url(name), "--store", store, "--json", env=env)
    wait_for(tmp_path / "bin" / "mark.pg_dump", proc)
    alter = subprocess.Popen(
        ["psql", "-X", "-q", "-d", f"postgresql://postgres@127.0.0.1:5432/{name}", "-c",
         "SET lock_timeout = 0; ALTER TABLE messages ADD COLUMN c11 int"],
    )  # fmt: skip
    try:
        code, err = finish(proc, timeout=30)
    finally:
        alter.wait(30)
    assert code == 0, (code, err)
    assert "waited 2s for a lock and gave up (a session altering a table was queued" in err
    assert "trying again in a new snapshot" in err
    assert len(_backups(store)) == 2
    checked = emrops_proc(
        "backup", "verify", "--all", "--store", store, "--db", url(name), timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert rows(name, "SELECT count(c11) FROM messages") == [(0,)]  # the ALTER went through

    holder = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        holder.execute("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        done = emrops_proc("backup", "run", "--db", url(name), "--store", store, timeout=30)
        pid = holder.info.backend_pid
    finally:
        holder.close()
    assert done.returncode == 1, done.stderr
    assert "could not lock a table within 2s: canceling statement due to lock timeout" in (
        done.stderr
    )
    assert f"pid {pid} (postgres, no application name, AccessExclusiveLock on messages)" in (
        done.stderr
    )
    assert "the backup waited 2s" in done.stderr
    assert len(_backups(store)) == 2  # nothing more


def test_a_restore_into_a_new_database_interrupted_says_so_and_a_rerun_needs_no_force(
    backed_up, tmp_path
) -> None:
    """--target naming a database that does not exist: restore creates it. SIGTERM in the
    restore transaction ended emrops on the spot (exit -15, no word). Now the message says
    the database it created is left empty; the rerun takes it as new (no --force needed)."""
    _source, store, backup_id = backed_up
    name = f"emrops_c11_new_{uuid.uuid4().hex[:8]}"
    env = stand_ins(tmp_path / "bin") | {
        "C11_MID_pg_restore": "--clean",
        "C11_BYTES": "20000",
        "C11_SLEEP": "5",
    }
    try:
        proc = start(*_restore(backup_id, name, str(store)), env=env)
        wait_for(tmp_path / "bin" / "mark.pg_restore", proc)
        proc.send_signal(signal.SIGTERM)
        code, err = finish(proc, timeout=30)
        assert code == 130, (code, err)
        assert "stopped during the restore, whose transaction was rolled back" in err
        assert "(the database this restore created, empty: a rerun restores into it)" in err
        assert rows(name, "SELECT to_regclass('messages')") == [(None,)]
        done = emrops_proc(*_restore(backup_id, name, str(store)), timeout=60)
        assert done.returncode == 0, done.stderr
        assert rows(name, COUNT) == [(ROWS,)]
    finally:
        drop_pg_database(name)


def test_a_safety_backup_that_fails_says_the_restore_changed_nothing(target, tmp_path) -> None:
    """The safety backup's pg_dump killed: "pg_dump of T failed (exit -9): no message", and
    nothing said whether the restore had changed the target. Now the signal is named and the
    message says the restore stopped before the target's data was changed; flag set back."""
    name, store, backup_id = target
    real = shutil.which("pg_dump")
    env = fake_tool(
        tmp_path / "bin",
        "pg_dump",
        f'if [[ "$*" == *--snapshot* ]]; then kill -9 $$; fi\nexec {real} "$@"',
    )
    done = emrops_proc(*_restore(backup_id, name, store), "--force", env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert (
        f"Error: pg_dump of {url(name)} failed (exit -9): killed by SIGKILL; the restore of "
        f"{backup_id} stopped there, before the target's data was changed"
    ) in done.stderr
    assert rows(name, COUNT) == [(ROWS - 10,)]
    assert flag(name) == {"on": False, "message": ""}
    assert _backups(store) == [backup_id]


def test_the_scratch_database_lock_holder_terminated_mid_verify_still_drops_it(
    target, tmp_path
) -> None:
    """The session holding a scratch database's advisory lock terminated (pg_terminate_backend)
    while the backup is restored into it: the verification goes on, the restore completes, and
    the scratch database is still dropped (on a new connection)."""
    name, store, backup_id = target
    env = stand_ins(tmp_path / "bin") | {"C11_PAUSE_pg_restore": "emrops_verify_", "C11_SLEEP": "1"}
    proc = start(*_restore(backup_id, name, store), "--force", env=env)
    wait_for(tmp_path / "bin" / "mark.pg_restore", proc)
    scratch = [
        arg.rsplit("/", 1)[1]
        for _pid, args in children(proc.pid)
        for arg in args.split()
        if "/emrops_verify_" in arg
    ][0]
    terminated = rows(
        "postgres",
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
        f"AND classid = {0x656D7276} AND objid = hashtext('{scratch}')::oid",
    )
    assert terminated == [(True,)]
    code, err = finish(proc, timeout=60)
    assert code == 0, err
    assert not rows("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{scratch}'")
    assert rows(name, COUNT) == [(ROWS,)]


@pytest.mark.parametrize("kind", ["psql does nothing", "toc fails", "script cut short"])
def test_a_restore_tool_that_misbehaves_is_not_reported_restored(target, tmp_path, kind) -> None:
    """A psql first on PATH that exits 0 without running anything: "restored" (exit 0), the
    target unchanged and maintenance left on (its restore message too). pg_restore -l failing:
    every relation of the target was taken as created after the backup and dropped with
    CASCADE (dependent objects too), the note listing them all. pg_restore's script cut short
    with exit 0: committed as it was. Now psql must echo a line after its COMMIT, the table of
    contents must list, the script must end with its last line: else exit 1, flag set back."""
    name, store, backup_id = target
    rows(name, "CREATE TABLE later (id int)")
    real = shutil.which("pg_restore")
    tool, body = {
        "psql does nothing": ("psql", "cat > /dev/null; exit 0"),
        "toc fails": ("pg_restore", f'[ "$1" = -l ] && {{ echo "pg_restore: error: boom" >&2; '
                      f'exit 1; }}\nexec {real} "$@"'),
        "script cut short": ("pg_restore", f'if [[ "$*" == *--clean* ]]; then {real} "$@" | '
                             'head -c 30000; exit 0; fi\n' f'exec {real} "$@"'),
    }[kind]  # fmt: skip
    env = fake_tool(tmp_path / "bin", tool, body)
    done = emrops_proc(*_restore(backup_id, name, store), "--force", env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    where = tmp_path / "bin" / tool
    said = {
        "psql does nothing": f"Error: psql ({where}) exited 0 but never confirmed the restore's "
        "COMMIT (the line it echoes after it): whether the restore committed is not known",
        "toc fails": f"Error: pg_restore -l ({where}) could not list the backup's archive (exit "
        "1, 0 entries: pg_restore: error: boom); nothing was changed",
        "script cut short": "target unchanged: pg_restore exited 0 but its script stops short "
        "of its last line",
    }[kind]
    assert said in done.stderr and "Traceback" not in done.stderr
    assert rows(name, COUNT) == [(ROWS - 10,)]
    assert rows(name, "SELECT to_regclass('later')") == [("later",)]
    assert flag(name) == {"on": False, "message": ""}


def test_a_second_restore_into_the_same_database_is_busy(target, tmp_path) -> None:
    """Two restores into one database from two stores (the store lock does not see the other):
    the second read the first's maintenance message as left by an interrupted restore, both
    ran, and the first's commit switched maintenance off while the second was still running.
    Now the second is refused (exit 75, Busy) naming the first; the first completes."""
    name, store, backup_id = target
    other = str(tmp_path / "other-store")
    shutil.copytree(store, other)
    env = stand_ins(tmp_path / "bin") | {"C11_PAUSE_psql": "ON_ERROR_STOP", "C11_SLEEP": "2"}
    first = start(*_restore(backup_id, name, store), "--force", env=env)
    wait_for(tmp_path / "bin" / "mark.psql", first)
    second = emrops_proc(*_restore(backup_id, name, other), "--force", timeout=60)
    code, err = finish(first, timeout=60)
    assert second.returncode == 75, second.stderr
    busy = f"Error: another restore into {url(name)} is running (emrops restore {first.pid} of "
    assert busy + f"{backup_id}, server pid " in second.stderr, second.stderr
    assert "nothing was changed" in second.stderr
    assert code == 0, err
    assert rows(name, COUNT) == [(ROWS,)]
    assert flag(name) == {"on": False, "message": ""}
    assert _backups(other) == [backup_id]  # the second took no safety backup


def test_a_pg_restore_too_old_for_the_archive_says_which_wrote_it(target, tmp_path) -> None:
    """A pg_restore older than the pg_dump that wrote the backup (an archive format it does
    not know): the restore failed verification with pg_restore's bare "unsupported version
    (1.16) in file header". Now the pg_dump that wrote it and this pg_restore are named."""
    name, store, backup_id = target
    real = shutil.which("pg_restore")
    env = fake_tool(
        tmp_path / "bin",
        "pg_restore",
        f'if [[ "$*" == *" -d "* ]]; then echo "pg_restore: error: unsupported version (1.16) '
        f'in file header" >&2; exit 1; fi\nexec {real} "$@"',
    )
    done = emrops_proc(*_restore(backup_id, name, store), "--force", env=env, timeout=60)
    assert done.returncode == 3, done.stderr
    version = subprocess.run([real, "--version"], capture_output=True, text=True).stdout.strip()
    assert (
        "failed verification, nothing restored: pg_restore: pg_restore: error: unsupported "
        "version (1.16) in file header (the archive was written by pg_dump (PostgreSQL) "
    ) in done.stderr
    assert f"; {version} cannot read it: install a PostgreSQL client at least as new" in (
        done.stderr
    )
    assert rows(name, COUNT) == [(ROWS - 10,)]


def test_a_server_out_of_disk_while_verifying_does_not_fail_the_backup(target, tmp_path) -> None:
    """The server's disk full while the backup was restored into its scratch database: "backup
    failed verification" (exit 3), recorded against the backup (so rotation would no longer
    count it), for the server's trouble. Now exit 1 saying so, nothing recorded."""
    name, store, backup_id = target
    real = shutil.which("pg_restore")
    env = fake_tool(
        tmp_path / "bin",
        "pg_restore",
        f'if [[ "$*" == *" -d "* ]]; then echo "pg_restore: error: could not execute query: '
        'ERROR:  could not extend file \\"base/1/2\\": No space left on device" >&2; exit 1; fi\n'
        f'exec {real} "$@"',
    )
    record = Path(store) / backup_id / "verification.json"
    before = record.read_bytes() if record.exists() else None
    done = emrops_proc(
        "backup", "verify", backup_id, "--store", store, "--db", url(name), env=env, timeout=60
    )
    assert done.returncode == 1, done.stderr
    assert (
        f"Error: could not verify backup {backup_id}: the PostgreSQL server ran out of a "
        "resource while it was restored into a scratch database (pg_restore: error: could not "
        'execute query: ERROR:  could not extend file "base/1/2": No space left on device); '
        "the backup was not judged"
    ) in done.stderr
    assert "Try: make room on the server" in done.stderr
    assert (record.read_bytes() if record.exists() else None) == before  # nothing recorded


def test_a_full_scratch_folder_in_a_restore_is_named(target, tmp_path) -> None:
    """The scratch folder (TMPDIR) filling up while the backup is decoded for a PostgreSQL
    restore: "unexpected OSError: [Errno 28] No space left on device" and "report it". Now the
    folder is named, with what to do (as verify and the SQLite restore do); nothing changed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    name, store, backup_id = target
    folder = Path(f"/var/tmp/emrops-tmp-{uuid.uuid4().hex[:10]}")
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        done = emrops_proc(
            *_restore(backup_id, name, store), "--force", env={"TMPDIR": str(folder)}, timeout=60
        )
    finally:
        subprocess.run(["umount", str(folder)], check=False)
        folder.rmdir()
    assert done.returncode == 1, done.stderr
    assert f"Error: cannot restore backup {backup_id} (nothing was restored): the scratch " in (
        done.stderr
    )
    assert "is full (No space left on device)" in done.stderr and "unexpected" not in done.stderr
    assert "Try: free space there, or point TMPDIR at a folder" in done.stderr
    assert rows(name, COUNT) == [(ROWS - 10,)]


def test_an_app_idle_in_transaction_on_the_flag_is_named_not_waited_for(target) -> None:
    """A session idle in transaction after reading the flag FOR SHARE (as the sim app's writes
    do): switching maintenance on waited for ever (no lock timeout), silently, before the
    restore's own lock timeout applies; with the target's lock_timeout it failed with the bare
    "canceling statement due to lock timeout". Now bounded, the session named, nothing
    changed."""
    name, store, backup_id = target
    with _admin_connect() as conn:
        conn.execute(f"ALTER DATABASE \"{name}\" SET lock_timeout = '2s'")
    holder = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}", application_name="c11")
    try:
        holder.execute("SELECT * FROM emrops_control FOR SHARE")
        done = emrops_proc(*_restore(backup_id, name, store), "--force", timeout=40)
        pid = holder.info.backend_pid
    finally:
        holder.close()
    assert done.returncode == 1, done.stderr
    assert (
        f"Error: could not switch maintenance on in {url(name)}: canceling statement due to lock "
        "timeout (the flag's table stays locked); sessions with a transaction open there: "
        f"pid {pid} (postgres, c11, idle in transaction since "
    ) in done.stderr
    assert "; nothing was changed" in done.stderr and "Try: end them" in done.stderr
    assert rows(name, COUNT) == [(ROWS - 10,)]
    assert _backups(store) == [backup_id]


def test_a_user_that_does_not_own_the_tables_is_refused_before_anything(target) -> None:
    """A user that does not own the target's tables (the restore drops and recreates them):
    information_schema hid the tables it may not read, so the target looked empty (no
    --force asked), and the restore went on until CREATE DATABASE or a DROP refused it. Now
    it is refused first, even with --force, naming the owner."""
    name, store, backup_id = target
    role = f"c11_{uuid.uuid4().hex[:8]}"
    with _admin_connect() as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN CREATEDB")
    try:
        weak = url(name).replace("postgres@", f"{role}@")
        done = emrops_proc(
            "backup", "restore", backup_id, "--target", weak, "--store", store, "--yes",
            "--force", timeout=60,
        )  # fmt: skip
    finally:
        with _admin_connect() as conn:
            conn.execute(f"DROP ROLE {role}")
    assert done.returncode == 1, done.stderr
    assert f"Error: restore refused, even with --force: user {role} does not own " in done.stderr
    assert "relation(s) of " in done.stderr and "(owned by postgres)" in done.stderr
    assert "Try: run the restore as the role that owns the database's tables" in done.stderr
    assert rows(name, COUNT) == [(ROWS - 10,)]
    assert _backups(store) == [backup_id]


def test_pg_restore_killed_while_verifying_does_not_fail_the_backup(target, tmp_path) -> None:
    """pg_restore killed (the OOM killer, say) while the backup is restored into its scratch
    database: "failed verification" (exit 3) with an empty reason, recorded against a good
    backup. Now exit 1 naming the signal, nothing recorded, the scratch database dropped."""
    name, store, backup_id = target
    record = Path(store) / backup_id / "verification.json"
    before = record.read_bytes() if record.exists() else None
    env = stand_ins(tmp_path / "bin") | {
        "C11_PAUSE_pg_restore": "emrops_verify_",
        "C11_SLEEP": "20",
    }
    proc = start("backup", "verify", backup_id, "--store", store, "--db", url(name), env=env)
    wait_for(tmp_path / "bin" / "mark.pg_restore", proc)
    for pid, args in children(proc.pid):
        if "emrops_verify_" in args and args.startswith("/bin/bash"):
            scratch = [a for a in args.split() if "/emrops_verify_" in a][0].rsplit("/", 1)[1]
            sleepers = children(pid)  # its sleep holds its stderr pipe: killed with it
            for victim in [pid, *(p for p, _ in sleepers)]:
                os.kill(victim, signal.SIGKILL)
    code, err = finish(proc, timeout=30)
    assert code == 1, (code, err)
    assert (
        f"Error: could not verify backup {backup_id}: pg_restore was killed by SIGKILL while it "
        "restored the backup into a scratch database; the backup was not judged"
    ) in err
    assert (record.read_bytes() if record.exists() else None) == before
    assert not rows("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{scratch}'")
