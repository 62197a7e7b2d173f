"""Session 14 hostile campaign: full stores, manifests of a newer emrops, and the other cases
of docs/backup.md "Session 14"."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backup.conftest import run_backup


def small_db(path: Path, rows: int = 1500) -> str:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)")
    conn.executemany("INSERT INTO t (v) VALUES (randomblob(1000))", [()] * rows)
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def in_private_tmpfs(mountpoint: Path, script: str, size: str) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run ``script`` (sh) with a ``size`` tmpfs on ``mountpoint`` in a private mount namespace
    (root only; skipped where ``unshare -m`` is not allowed). The mount ends with the script."""
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("unshare -m is not allowed here (needs root)")
    mountpoint.mkdir(parents=True, exist_ok=True)
    setup = f"mount -t tmpfs -o size={size} tmpfs '{mountpoint}' && "
    return subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", setup + script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- a store that filled up after its backups were written ------------------------------


def test_a_full_store_still_verifies_and_restores(tmp_path: Path) -> None:
    """The store's disk filled up (other backups, another program) after a backup was taken:
    verify, pin and restore failed with `unexpected OSError: [Errno 28]` (writing the lock's
    holder); and restore stopped when the verification could not be recorded, so a full
    backup disk meant no restore at all. Now the lock is held without a holder name (a
    warning), the verification is not recorded (a warning, as on a read-only store), a
    restore into a new file works, and restore --force refuses because its safety backup
    cannot be written, target unchanged."""
    py = sys.executable
    url = small_db(tmp_path / "src.db")
    target = tmp_path / "target.db"
    small_db(target, rows=3)
    before = sha256(target)
    mnt = tmp_path / "mnt"
    store = mnt / "store"
    em = f"{py} -m emrops backup"
    out = in_private_tmpfs(
        mnt,
        f"{em} run --db {url} --store {store} >/dev/null || exit 9; "
        f"dd if=/dev/zero of={mnt}/filler bs=64k >/dev/null 2>&1; "
        f"{em} verify --latest --source all --store {store}; echo verify=$?; "
        f"{em} restore --latest --source all --target {tmp_path}/new.db --yes --store {store}; "
        f"echo new=$?; "
        f"{em} restore --latest --source all --target {target} --force --yes --store {store}; "
        f"echo force=$?; ls -A {store}/*/",
        size="2m",
    )
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr, out.stderr
    assert "verify=0" in out.stdout and "new=0" in out.stdout, (out.stdout, out.stderr)
    assert "force=1" in out.stdout, (out.stdout, out.stderr)
    assert "is full" in out.stderr and "not recorded" in out.stderr
    assert "before the target's data was changed" in out.stderr
    assert "verification.json" not in out.stdout  # nothing recorded, nothing half-written
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1500
    conn.close()
    assert sha256(target) == before


def test_a_full_store_is_reported_by_backup_run(cli, tmp_path: Path) -> None:
    """backup run on a store that is already full: the lock warning, then the store's own
    `is full` error, exit 1, no backup folder left."""
    url = small_db(tmp_path / "src.db", rows=10)
    mnt = tmp_path / "mnt"
    store = mnt / "store"
    out = in_private_tmpfs(
        mnt,
        f"mkdir {store} && dd if=/dev/zero of={mnt}/filler bs=64k >/dev/null 2>&1; "
        f"{sys.executable} -m emrops backup run --db {url} --store {store}; echo rc=$?; "
        f"ls -A {store}",
        size="1m",
    )
    assert "rc=1" in out.stdout, (out.stdout, out.stderr)
    assert "unexpected" not in out.stderr and "is full" in out.stderr, out.stderr
    assert out.stdout.split("rc=1")[1].split() == [".lock"]
    assert run_backup(cli, url, tmp_path / "ok")["row_counts"] == {"t": 10}


# -- a manifest written by a newer emrops ------------------------------------------------


def rewrite_manifest(store: Path, backup_id: str, **changes: object) -> None:
    from emrops.backup.manifest import seal_of

    path = store / backup_id / "manifest.json"
    doc = json.loads(path.read_text())
    doc.update(changes)
    doc.pop("seal")
    doc["seal"] = seal_of(doc)  # as the newer emrops would have sealed it
    path.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "changes",
    [
        {"format": "emrops-backup/2", "parts": [{"name": "database.sqlite.zst.1"}]},
        {"tool_version": "99.0.0", "replication": {"lag_s": 0}},
    ],
    ids=["format-2", "newer-tool-with-new-field"],
)
def test_a_newer_emrops_manifest_is_not_marked_failed(cli, tmp_path: Path, changes) -> None:  # type: ignore[no-untyped-def]
    """A store shared with a newer emrops (a drill host not upgraded yet): verify of its
    backups recorded FAILED ("restore another backup, and find out what damaged this one",
    exit 3) over the newer emrops's own ok record, so the newer emrops no longer counted
    them as verified and its rotate deleted them. Now exit 1 naming the newer emrops, the
    record untouched; restore and copy exit 1 with the same reason (not 3, "damaged");
    listed broken, so rotate keeps it."""
    url = small_db(tmp_path / "src.db", rows=10)
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    assert cli("backup", "verify", backup_id, "--store", str(store)).exit_code == 0
    rewrite_manifest(store, backup_id, **changes)
    record = (store / backup_id / "verification.json").read_bytes()
    for args in (["verify", backup_id], ["verify", "--all"]):
        result = cli("backup", *args, "--store", str(store))
        assert result.exit_code == 1, (args, result.stderr)
        assert "written by a newer emrops" in result.stderr, result.stderr
    assert (store / backup_id / "verification.json").read_bytes() == record
    result = cli("backup", "restore", backup_id, "--target", str(tmp_path / "new.db"), "--yes",
                 "--store", str(store))  # fmt: skip
    assert result.exit_code == 1 and "written by a newer emrops" in result.stderr
    assert not (tmp_path / "new.db").exists()
    result = cli("backup", "copy", backup_id, "--to", str(tmp_path / "copy"), "--store", str(store))
    assert result.exit_code == 1 and "written by a newer emrops" in result.stderr
    newest = run_backup(cli, url, store)["id"]
    assert cli("backup", "verify", newest, "--store", str(store)).exit_code == 0
    result = cli("backup", "rotate", "--keep-last", "1", "--store", str(store))
    assert result.exit_code == 0, result.stderr
    assert (store / backup_id / "manifest.json").exists(), result.stdout


def test_unknown_fields_from_this_version_are_still_damage(cli, tmp_path: Path) -> None:
    """Only a newer tool_version excuses fields this emrops does not know: the same field in
    a manifest that says this version wrote it is a changed manifest (exit 3, recorded)."""
    url = small_db(tmp_path / "src.db", rows=10)
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    rewrite_manifest(store, backup_id, replication={"lag_s": 0})
    result = cli("backup", "verify", backup_id, "--store", str(store))
    assert result.exit_code == 3 and "Additional properties" in result.stderr, result.stderr
    assert "written by a newer emrops" not in result.stderr
    assert (store / backup_id / "verification.json").exists()


# -- in-place restore that needs a page-size rewrite the app's schema does not allow ------


def _app_db(path: Path, page_size: int, rows: int) -> None:
    """A WAL database whose index uses the app's collation and function (registered here)."""
    conn = sqlite3.connect(path)
    conn.create_collation("appcoll", lambda a, b: (a.lower() > b.lower()) - (a.lower() < b.lower()))
    conn.create_function("norm", 1, lambda s: s and s.lower(), deterministic=True)
    conn.execute(f"PRAGMA page_size={page_size}")
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT COLLATE appcoll)")
    conn.execute("CREATE INDEX ix ON t(name)")
    conn.execute("CREATE INDEX ix2 ON t(norm(name))")
    conn.executemany(
        "INSERT INTO t(name) VALUES (?)", [(f"{'aB'[i % 2]}{i}",) for i in range(rows)]
    )
    conn.commit()
    conn.close()


def test_in_place_restore_needing_a_vacuum_with_the_apps_collation(cli, tmp_path: Path) -> None:
    """The target has another page size, so the image is rewritten with VACUUM, which must
    rebuild the index ordered by the app's collation: `unexpected OperationalError: no such
    collation sequence: appcoll`, after maintenance and a safety backup. Now refused before
    anything changes (no safety backup), naming the collation and the ways out."""
    _app_db(tmp_path / "src.db", 4096, 200)
    _app_db(tmp_path / "tgt.db", 8192, 5)
    store = tmp_path / "store"
    backup_id = run_backup(cli, f"sqlite:///{tmp_path / 'src.db'}", store)["id"]
    before = sha256(tmp_path / "tgt.db")
    result = cli("backup", "restore", backup_id, "--target", str(tmp_path / "tgt.db"), "--force",
                 "--yes", "--store", str(store))  # fmt: skip
    assert result.exit_code == 1, result.stderr
    assert "unexpected" not in result.stderr
    assert "no such collation sequence: appcoll" in result.stderr
    assert "pages are 4096 bytes and the target's 8192" in result.stderr
    assert "--target NEW.db" in result.stderr and "page_size=4096" in result.stderr
    assert sha256(tmp_path / "tgt.db") == before
    assert [p.name for p in store.iterdir() if not p.name.startswith(".")] == [backup_id]
    # the way out the hint names: a new file keeps the backup's page size and needs no VACUUM
    result = cli("backup", "restore", backup_id, "--target", str(tmp_path / "new.db"), "--yes",
                 "--store", str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 200
    conn.close()


def test_in_place_restore_whose_page_size_rewrite_fills_the_disk(tmp_path: Path) -> None:
    """The VACUUM that gives the image the target's page size writes a rollback journal of the
    whole image beside the target: on a nearly full disk it failed with `unexpected
    OperationalError: database or disk is full`, after maintenance and a safety backup. Now
    exit 1 `could not rewrite ...; nothing was restored` with a hint naming the folder, before
    anything of the target changes (no safety backup, the file's bytes the same)."""
    src = tmp_path / "src.db"
    conn = sqlite3.connect(src)
    conn.execute("CREATE TABLE t (v)")
    conn.executemany("INSERT INTO t VALUES (randomblob(1000))", [()] * 650)
    conn.commit()
    conn.close()
    store = tmp_path / "store"
    em = f"{sys.executable} -m emrops backup"
    mnt = tmp_path / "mnt"
    target = mnt / "tgt.db"
    make_target = (
        f"{sys.executable} -c \"import sqlite3; c = sqlite3.connect('{target}'); "
        "c.execute('PRAGMA page_size=8192'); c.execute('PRAGMA journal_mode=wal'); "
        "c.execute('CREATE TABLE t (v)'); c.execute('INSERT INTO t VALUES (1)'); c.commit(); "
        'c.close()"'
    )
    out = in_private_tmpfs(
        mnt,
        f"{em} run --db sqlite:///{src} --store {store} > {tmp_path}/id || exit 9; "
        f"{make_target} && sha256sum < {target}; "
        f"{em} restore $(cat {tmp_path}/id) --target {target} --force --yes --store {store}; "
        f"echo rc=$?; sha256sum < {target}",
        size="1100k",
    )
    assert "rc=1" in out.stdout, (out.stdout, out.stderr)
    before, after = out.stdout.replace("rc=1", "").split()[::2][:2]
    assert before == after
    assert "unexpected" not in out.stderr, out.stderr
    assert "could not rewrite the restored data" in out.stderr
    assert f"free space in {mnt}" in out.stderr
    assert len([p for p in store.iterdir() if not p.name.startswith(".")]) == 1  # no safety copy


# -- restore into a new database through a link --------------------------------------------


def test_restore_through_a_link_to_a_database_not_made_yet(cli, tmp_path: Path) -> None:
    """`--target current.db` where current.db is a symlink to a file that does not exist yet
    (a fresh host set up by config management): the image was renamed over the link, so the
    link was gone and the file the apps open (the link's target) never appeared. Now the
    database is made where the link leads (its folder created), as SQLite would; the link
    stays."""
    url = small_db(tmp_path / "src.db", rows=10)
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    real = tmp_path / "data" / "app.db"
    link = tmp_path / "current.db"
    link.symlink_to(real)
    result = cli("backup", "restore", backup_id, "--target", str(link), "--yes", "--store",
                 str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and Path(os.readlink(link)) == real
    conn = sqlite3.connect(real)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 10
    conn.close()
    assert sorted(p.name for p in real.parent.iterdir()) == ["app.db"]


# -- manifest fields of the wrong type inside source_id --------------------------------------


@pytest.mark.parametrize(
    "header",
    ["x", [1], {"text_encoding": 10**20, "page_size": "x"}],
    ids=["string", "list", "unknown-encoding"],
)
def test_restore_onto_an_existing_file_with_an_odd_source_id_header(  # type: ignore[no-untyped-def]
    cli, tmp_path: Path, header
) -> None:
    """The schema only says source_id is an object: a (resealed) manifest whose
    source_id.header was a string or a list made `restore --force` onto an existing file exit 1
    `unexpected AttributeError: 'str' object has no attribute 'get'` (and `--dry-run` too);
    an encoding code that is none refused the restore as "a unknown encoding 1000...
    database". Now such a header says nothing: the decoded image's own encoding is what is
    checked, and the restore goes through."""
    src = tmp_path / "src.db"
    url = small_db(src, rows=10)
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    path = store / backup_id / "manifest.json"
    doc = json.loads(path.read_text())
    rewrite_manifest(store, backup_id, source_id={**doc["source_id"], "header": header})
    target = tmp_path / "target.db"
    small_db(target, rows=3)
    args = ("backup", "restore", backup_id, "--target", str(target), "--store", str(store))
    result = cli(*args, "--dry-run")
    assert result.exit_code == 0, result.stderr
    result = cli(*args, "--force", "--yes")
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(target)
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 10
    conn.close()


# -- table names that are not UTF-8 -------------------------------------------------------


def test_tables_whose_names_are_not_utf8(cli, tmp_path: Path) -> None:
    """SQLite takes any bytes as a name (an app in C or Go may write them). backup run exited 1
    `cannot snapshot ...: Could not decode to UTF-8 column 'name'`, so such a database had no
    backup at all; a restore (new file or --force) onto one exited `unexpected
    OperationalError`. Now each such table is counted through dbstat under its name with the
    invalid bytes escaped (rowid, WITHOUT ROWID over several b-tree levels, empty), its foreign
    key violations are counted, verify compares the same counts, and both restores work with
    the names' bytes kept."""
    src = tmp_path / "src.db"
    script = (
        b'CREATE TABLE "big\xff"(v);'
        b'CREATE TABLE "w\xffr"(k TEXT PRIMARY KEY, v) WITHOUT ROWID;'
        b'CREATE TABLE "e\xfe"(v); CREATE TABLE ok(v); INSERT INTO ok VALUES (1);'
        b'CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE "c\xff"("col\xfe" REFERENCES p);'
        b'CREATE INDEX "ix\xff" ON "c\xff"("col\xfe");'
        b'CREATE VIEW "v\xff" AS SELECT * FROM "c\xff";'
        b'INSERT INTO "c\xff" VALUES (5);'
        b"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 7777) "
        b'INSERT INTO "big\xff" SELECT randomblob(300) FROM n;'
        b"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) "
        b"INSERT INTO \"w\xffr\" SELECT printf('%08d-%s', i, hex(randomblob(20))), i FROM n;"
    )
    subprocess.run(["sqlite3", str(src)], input=script, check=True)
    before = sha256(src)
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{src}", store)
    assert manifest["row_counts"] == {
        "big\\xff": 7777, "w\\xffr": 5000, "e\\xfe": 0, "ok": 1, "c\\xff": 1, "p": 0
    }  # fmt: skip
    assert manifest["engine_info"]["foreign_key_violations"] == 1  # c's row 5: no such p
    backup_id = manifest["id"]
    result = cli("backup", "verify", backup_id, "--store", str(store))
    assert result.exit_code == 0, result.stderr
    assert "6 tables, 12779 rows" in result.stdout + result.stderr
    new = tmp_path / "new.db"
    result = cli("backup", "restore", backup_id, "--target", str(new), "--yes", "--store",
                 str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(new)
    conn.text_factory = bytes
    names = sorted(r[0] for r in conn.execute("SELECT name FROM sqlite_master"))
    assert names == sorted(
        [b"big\xff", b"w\xffr", b"e\xfe", b"ok", b"p", b"c\xff", b"ix\xff", b"v\xff"]
    )
    conn.close()
    target = tmp_path / "target.db"
    small_db(target, rows=3)
    result = cli("backup", "restore", backup_id, "--target", str(target), "--force", "--yes",
                 "--store", str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sha256(src) == before


def test_latest_says_which_newer_backups_it_passed_over(cli, tmp_path: Path) -> None:
    """`restore --latest` and `verify --latest` skip a newest backup this emrops cannot use (a
    newer emrops's, a damaged manifest) and took the one before, silently: a restore brought
    back older data than the store holds with nothing said. Now a warning names each newer
    backup passed over, why, and which one --latest takes."""
    src = tmp_path / "src.db"
    url = small_db(src, rows=1)
    store = tmp_path / "store"
    older = run_backup(cli, url, store)["id"]
    conn = sqlite3.connect(src)
    conn.execute("INSERT INTO t (v) VALUES (x'00')")
    conn.commit()
    conn.close()
    newest = run_backup(cli, url, store)["id"]
    rewrite_manifest(store, newest, format="emrops-backup/2")
    result = cli("backup", "restore", "--latest", "--source", url, "--target",
                 str(tmp_path / "new.db"), "--yes", "--store", str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "passes over 1 newer backup(s)" in result.stderr, result.stderr
    assert newest in result.stderr and "written by a newer emrops" in result.stderr
    assert f"it takes {older}" in result.stderr
    conn = sqlite3.connect(tmp_path / "new.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 1  # the older data, as said
    conn.close()
    result = cli("backup", "verify", "--latest", "--source", url, "--store", str(store))
    assert result.exit_code == 0 and f"it takes {older}" in result.stderr, result.stderr


# -- long unicode file names ---------------------------------------------------------------


def test_a_long_unicode_name_as_restore_target_and_source(cli, tmp_path: Path) -> None:
    """80 CJK characters make a 243-byte file name, which Linux allows. Given as a path, its
    percent-escaped URL form (720 bytes) was checked as a file name: `restore --target PATH`
    (new or --force) and `list --source PATH` exited `unexpected OSError: [Errno 36] File
    name too long`; an in-place restore got there only after maintenance, in its safety
    backup; and the scratch file beside such a target (the name and about 30 bytes) could not
    be made either, nor the name an unreadable file is moved aside to. Now a path is never
    sent through URL text, those names are shortened with a digest, and all of them work."""
    name = "数" * 80 + ".db"
    assert len(name.encode()) == 243
    src = tmp_path / name
    small_db(src, rows=5)
    store = tmp_path / "store"
    backup_id = run_backup(cli, f"sqlite:///{src}", store)["id"]
    conn = sqlite3.connect(src)
    conn.execute("DELETE FROM t")
    conn.commit()
    conn.close()
    result = cli("backup", "list", "--source", str(src), "--store", str(store), "--json")
    assert result.exit_code == 0, result.stderr
    assert [b["id"] for b in json.loads(result.stdout)["backups"]] == [backup_id]
    result = cli("backup", "restore", backup_id, "--target", str(src), "--force", "--yes",
                 "--store", str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    new = tmp_path / ("新" + name)
    result = cli("backup", "restore", backup_id, "--target", str(new), "--yes", "--store",
                 str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    for path in (src, new):
        conn = sqlite3.connect(path)
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 5
        conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, "新" + name, "store"])
    # an unreadable file of such a name is moved aside under a shortened name (it failed with
    # "File name too long" too: NAME.before-restore-ID is 43 bytes longer)
    new.write_bytes(b"not a database " * 40)
    result = cli("backup", "restore", backup_id, "--target", str(new), "--force", "--yes",
                 "--store", str(store))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    aside = [p for p in tmp_path.iterdir() if f".before-restore-{backup_id}" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == b"not a database " * 40
    assert aside[0].name.startswith("新数") and "~" in aside[0].name
