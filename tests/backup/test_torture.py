"""A hostile corpus against backup run / verify / restore / list / rotate (follow-up of #15).

Each case must end in a correct backup (row counts, verify exit 0, the restored file keeps the
source's shape) or a clear error (``Error:``, a documented exit code, no traceback, nothing
published), never a silently empty or wrong backup, nor a verify that passes on a bad one.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.backup.conftest import json_of, listed, run_backup, write_resealed
from tests.conftest import PG_HOST

SHAPE = ("page_size", "auto_vacuum", "user_version", "application_id", "freelist_count")


def _make(path: Path, pragmas: list[str], after: str | None = None, rows: int = 2000) -> None:
    conn = sqlite3.connect(path)
    for pragma in pragmas:
        conn.execute(pragma)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [("x" * 200,)] * rows)
    conn.commit()
    if after:
        conn.execute(after)
        conn.commit()
    conn.close()


def _shape(path: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        out = {p: conn.execute(f"PRAGMA {p}").fetchone()[0] for p in SHAPE}
        out["rows"] = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        return out
    finally:
        conn.close()


SHAPES = {
    "page_size 512": (["PRAGMA page_size = 512"], None),
    "page_size 65536": (["PRAGMA page_size = 65536"], None),
    "page_size 65536 WAL": (["PRAGMA page_size = 65536", "PRAGMA journal_mode = WAL"], None),
    "auto_vacuum FULL": (["PRAGMA auto_vacuum = FULL"], "DELETE FROM t WHERE id % 2 = 0"),
    "auto_vacuum INCREMENTAL": (["PRAGMA auto_vacuum = INCREMENTAL"], "DELETE FROM t WHERE id > 9"),
    "freelist heavy": ([], "DELETE FROM t WHERE id > 100"),
    "user_version and application_id": (
        ["PRAGMA user_version = 42", "PRAGMA application_id = 1234567"],
        None,
    ),
}


@pytest.mark.parametrize("case", SHAPES)
def test_sqlite_file_shapes_back_up_verify_and_restore_unchanged(
    cli, tmp_path: Path, case: str
) -> None:
    src = tmp_path / "src.db"
    store = tmp_path / "store"
    _make(src, *SHAPES[case])
    want = _shape(src)
    manifest = run_backup(cli, f"sqlite:///{src}", store)
    assert manifest["row_counts"] == {"t": want["rows"]}
    assert json_of(cli("backup", "verify", manifest["id"], "--store", str(store), "--json"))
    out = tmp_path / "restored.db"
    cli("backup", "restore", manifest["id"], "--target", str(out), "--yes", "--store", str(store))
    assert _shape(out) == want  # page size, auto_vacuum, user_version, application_id, freelist
    assert _shape(src) == want  # the source is untouched


def test_wal_without_shm_and_wal_larger_than_the_database(cli, tmp_path: Path) -> None:
    """A WAL left with no -shm (copied, or its -shm deleted), holding every page: the backup
    has what the WAL committed, not the stale main file."""
    live = tmp_path / "live.db"
    conn = sqlite3.connect(live)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO t(v) VALUES (?)", [("y" * 300,)] * 3000)
    conn.commit()
    src = tmp_path / "copy.db"
    shutil.copy(live, src)
    shutil.copy(f"{live}-wal", f"{src}-wal")
    conn.close()
    assert os.path.getsize(f"{src}-wal") > 10 * os.path.getsize(src)
    assert not os.path.exists(f"{src}-shm")
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{src}", store)
    assert manifest["row_counts"] == {"t": 3000}
    verified = json_of(cli("backup", "verify", manifest["id"], "--store", str(store), "--json"))
    assert verified["results"][0]["ok"] is True if "results" in verified else True


def _no_traceback(result) -> None:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: ") or "\nError: " in result.stderr, result.stderr


def _bad_sources(tmp: Path) -> dict[str, tuple[Path, int, str]]:
    zero = tmp / "zero.db"
    zero.touch()
    text = tmp / "text.db"
    text.write_text("this is not an SQLite database, only text long enough for a header\n")
    trunc = tmp / "trunc.db"
    _make(trunc, ["PRAGMA page_size = 512"], "DELETE FROM t WHERE id > 1500")
    os.truncate(trunc, os.path.getsize(trunc) - 512 * 3)  # the last pages are beyond EOF
    loop = tmp / "loop.db"
    os.symlink(tmp / "loop2.db", loop)
    os.symlink(loop, tmp / "loop2.db")
    folder = tmp / "folder.db"
    folder.mkdir()
    return {
        "zero-length file": (zero, 2, "is empty (0 bytes)"),
        "not SQLite": (text, 2, "is not an SQLite database"),
        "truncated (last page beyond EOF)": (trunc, 1, "the source is damaged"),
        "symlink loop": (loop, 2, "not found"),
        "a folder": (folder, 2, "is a folder"),
    }


def test_bad_sources_are_refused_and_create_nothing(cli, tmp_path: Path) -> None:
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    for case, (path, code, words) in _bad_sources(src_dir).items():
        store = tmp_path / f"store-{code}-{len(words)}"
        result = cli("backup", "run", "--db", f"sqlite:///{path}", "--store", str(store))
        assert result.exit_code == code, (case, result.exit_code, result.stderr)
        assert words in " ".join(result.stderr.split()), (case, result.stderr)
        _no_traceback(result)
        published = list(store.glob("*/manifest.json")) if store.exists() else []
        assert published == [], case


def _damage(store: Path, backup_id: str, name: str, how: str) -> None:
    path = store / backup_id / name
    path.unlink()
    if how == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("manifest.json", "folder"),
        ("manifest.json", "fifo"),
        ("database.sqlite.zst", "folder"),
        ("database.sqlite.zst", "fifo"),
    ],
)
def test_a_store_file_replaced_by_a_folder_or_fifo_is_damage(
    cli, seeded_sqlite: str, tmp_path: Path, name: str, how: str
) -> None:
    store = tmp_path / "store"
    good = run_backup(cli, seeded_sqlite, store)["id"]
    bad = run_backup(cli, seeded_sqlite, store)["id"]
    assert cli("backup", "verify", "--all", "--store", str(store)).exit_code == 0
    _damage(store, bad, name, how)
    entries = {e["id"]: e for e in listed(cli, store)}
    assert set(entries) == {good, bad}  # the damaged backup is shown, never hidden
    checked = cli("backup", "verify", bad, "--store", str(store))
    assert checked.exit_code == 3, checked.stderr
    assert "is not a regular file" in " ".join(checked.stderr.split())
    _no_traceback(checked)
    every = cli("backup", "verify", "--all", "--store", str(store))
    assert every.exit_code == 3
    entries = {e["id"]: e for e in listed(cli, store)}
    assert entries[bad]["verified"] in ("broken", "failed"), entries[bad]
    assert entries[good]["verified"] == "ok"
    # A later run's clean-up does not take it for a crashed run's leftovers; rotate keeps it
    # or deletes only what its rules say (never the newest verified one).
    run_backup(cli, seeded_sqlite, store)
    assert (store / bad / name).exists()
    rotated = cli("backup", "rotate", "--keep-last", "1", "--store", str(store))
    assert rotated.exit_code == 0, rotated.stderr
    assert (store / good).exists() or entries[bad]["verified"] == "failed"
    if name == "manifest.json":
        assert (store / bad / name).exists()  # broken: kept for someone to look at


def _pg_exec(dbname: str, *statements: str) -> None:
    with psycopg.connect(f"postgresql://postgres@{PG_HOST}/{dbname}", autocommit=True) as c:
        for statement in statements:
            c.execute(statement.encode())


def test_postgres_count_keys_do_not_collide(cli, pg_url: str, tmp_path: Path) -> None:
    """Public table "a.b" and table b in schema a were both counted as 'a.b': one count hid
    the other, and verify compared only the survivor."""
    dbname = pg_url.rsplit("/", 1)[1]
    _pg_exec(
        dbname,
        'CREATE SCHEMA a; CREATE TABLE a.b(id int); CREATE TABLE public."a.b"(id int)',
        "INSERT INTO a.b SELECT generate_series(1, 2)",
        'INSERT INTO public."a.b" SELECT generate_series(1, 5)',
        'CREATE SCHEMA "x.y"; CREATE TABLE "x.y".z(id int); CREATE TABLE x(id int)',
        'CREATE TABLE "x.y"."""q"(id int); INSERT INTO "x.y".z VALUES (1), (2), (3)',
        "CREATE TABLE nocols(); INSERT INTO nocols DEFAULT VALUES",
        "CREATE UNLOGGED TABLE unlogged(id int); INSERT INTO unlogged VALUES (1)",
    )
    store = tmp_path / "store"
    manifest = run_backup(cli, pg_url, store)
    assert manifest["row_counts"] == {
        "a.b": 2,
        '"a.b"': 5,
        '"x.y".z': 3,
        '"x.y"."""q"': 0,
        "x": 0,
        "nocols": 1,
        "unlogged": 1,
    }
    env = {"EMROPS_DB_URL": pg_url}
    ok = cli("backup", "verify", manifest["id"], "--store", str(store), env=env)
    assert ok.exit_code == 0, ok.stderr
    # A manifest written before quoted keys (no dotted names there) still verifies.
    _pg_exec(dbname, 'DROP TABLE public."a.b"', 'DROP SCHEMA "x.y" CASCADE')
    old = run_backup(cli, pg_url, store)
    path = store / old["id"] / "manifest.json"
    doc = json.loads(path.read_text())
    assert doc["row_counts"] == {"a.b": 2, "x": 0, "nocols": 1, "unlogged": 1}
    doc["row_counts"]["a.b"] = 3  # a count the restore does not have: caught
    write_resealed(path, doc)
    bad = cli("backup", "verify", old["id"], "--store", str(store), env=env)
    assert bad.exit_code == 3 and "a.b: 2 (manifest 3)" in bad.stderr, bad.stderr


def test_postgres_large_objects_survive(cli, pg_url: str, tmp_path: Path) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    _pg_exec(dbname, "SELECT lo_from_bytea(424242, 'payload bytes'::bytea)")
    store = tmp_path / "store"
    manifest = run_backup(cli, pg_url, store)
    target = pg_url.rsplit("/", 1)[0] + f"/{dbname}_r"
    try:
        done = cli(
            "backup", "restore", manifest["id"], "--target", target, "--yes",
            "--store", str(store), env={"EMROPS_DB_URL": pg_url},
        )  # fmt: skip
        assert done.exit_code == 0, done.stderr
        with psycopg.connect(f"postgresql://postgres@{PG_HOST}/{dbname}_r") as c:
            got = c.execute("SELECT lo_get(424242)").fetchone()
        assert got is not None and bytes(got[0]) == b"payload bytes"
    finally:
        with psycopg.connect(f"postgresql://postgres@{PG_HOST}/postgres", autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(f"{dbname}_r")
                )
            )


def test_concurrent_runs_on_one_store(tmp_path: Path, seeded_sqlite: str) -> None:
    """Two `backup run` processes at once: each publishes a whole backup or exits 75 (busy);
    every published backup verifies."""
    import sys

    store = tmp_path / "store"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "emrops",
                "backup",
                "run",
                "--db",
                seeded_sqlite,
                "--store",
                str(store),
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(3)
    ]
    codes = [p.wait(120) for p in procs]
    assert all(c in (0, 75) for c in codes), [
        (c, p.stderr.read()) for c, p in zip(codes, procs, strict=True)
    ]  # type: ignore[union-attr]
    published = len(list(store.glob("*/manifest.json")))
    assert published == codes.count(0) >= 1
    check = subprocess.run(
        [sys.executable, "-m", "emrops", "backup", "verify", "--all", "--store", str(store)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


def _in_tiny_tmpfs(
    mountpoint: Path, script: str, size: str = "200k"
) -> subprocess.CompletedProcess:  # type: ignore[type-arg]
    """Run ``script`` (sh) with a ``size`` tmpfs mounted on ``mountpoint`` in a private mount
    namespace (root only; skipped where ``unshare -m`` is not allowed)."""
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


def _blob_db(path: Path) -> str:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    conn.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) "
        "INSERT INTO t(v) SELECT randomblob(1000) FROM n"
    )
    conn.commit()
    conn.close()
    return f"sqlite:///{path}"


def test_full_store_and_full_scratch(cli, tmp_path: Path) -> None:
    """A store on a full filesystem publishes nothing (exit 1, says full); a full scratch
    folder during verify or restore is not damage: exit 1, nothing recorded, the earlier
    'ok' stands, nothing restored."""
    import sys

    py = sys.executable
    url = _blob_db(tmp_path / "src.db")
    mnt = tmp_path / "mnt"
    full = _in_tiny_tmpfs(
        mnt,
        f"{py} -m emrops backup run --db {url} --store {mnt}/store; echo rc=$?; ls -A {mnt}/store",
    )
    assert "rc=1" in full.stdout and "is full" in full.stderr, (full.stdout, full.stderr)
    assert full.stdout.split("rc=1")[1].split() == [".lock"]  # no backup folder, no staging
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    assert cli("backup", "verify", backup_id, "--store", str(store)).exit_code == 0
    tmp = tmp_path / "tmp"
    out = _in_tiny_tmpfs(
        tmp,
        f"TMPDIR={tmp} {py} -m emrops backup verify {backup_id} --store {store}; echo rc=$?; "
        f"mkdir {tmp}/t; TMPDIR={tmp} {py} -m emrops backup restore {backup_id} "
        f"--target {tmp}/t/r.db --store {store} --yes; echo rc=$?; ls -A {tmp} {tmp}/t",
    )
    assert out.stdout.count("rc=1") == 2, (out.stdout, out.stderr)
    assert "the scratch folder" in out.stderr and "is full" in out.stderr
    assert "Traceback" not in out.stderr and "unexpected" not in out.stderr
    assert "r.db" not in out.stdout  # nothing restored, no scratch left
    assert listed(cli, store)[0]["verified"] == "ok"  # never marked failed by a full disk


def test_recipients_file_text_and_crlf_identity(cli, tmp_path: Path) -> None:
    """EMROPS_BACKUP_RECIPIENT may hold an age recipients file (comments, blank lines, CRLF,
    several keys); an identity file with CRLF line endings decrypts."""
    import pyrage

    one, two = pyrage.x25519.Identity.generate(), pyrage.x25519.Identity.generate()
    recipients = f"# ops team\r\n{one.to_public()}\r\n\r\n# dr site\n{two.to_public()}  # second\n"
    url = _blob_db(tmp_path / "src.db")
    store = tmp_path / "store"
    manifest = json_of(
        cli(
            "backup", "run", "--encrypt", "--db", url, "--store", str(store), "--json",
            env={"EMROPS_BACKUP_RECIPIENT": recipients},
        )
    )["manifest"]  # fmt: skip
    assert manifest["files"][0]["recipients"] == [str(one.to_public()), str(two.to_public())]
    for identity in (one, two):
        text = f"# created: now\r\n# public key: {identity.to_public()}\r\n{identity}\r\n"
        ok = cli(
            "backup", "verify", manifest["id"], "--store", str(store),
            env={"EMROPS_BACKUP_IDENTITY": text},
        )  # fmt: skip
        assert ok.exit_code == 0, ok.stderr


def test_huge_sizes_in_a_resealed_manifest_fail_verify(cli, tmp_path: Path) -> None:
    url = _blob_db(tmp_path / "src.db")
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    path = store / backup_id / "manifest.json"
    doc = json.loads(path.read_text())
    doc["files"][0]["size"] = doc["files"][0]["raw_size"] = 10**30
    doc["row_counts"] = {"t": 10**30}
    write_resealed(path, doc)
    bad = cli("backup", "verify", backup_id, "--store", str(store))
    assert bad.exit_code == 3 and "manifest says 1000000000000000000000000000000 bytes" in " ".join(
        bad.stderr.split()
    )
    _no_traceback(bad)
    refused = cli(
        "backup", "restore", backup_id, "--target", str(tmp_path / "r.db"), "--yes",
        "--store", str(store),
    )  # fmt: skip
    assert refused.exit_code == 3 and not (tmp_path / "r.db").exists()


AZURE_PREFIXES = ["pre fix", "a%20b", "h#sh", "q?x=1", "ünï/çødé", "one%2Ftwo"]


def test_azure_prefixes_with_hostile_characters(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """Each prefix is used exactly as written (never cut at `#` or `?`, never decoded from
    `%`): its backups are listed, verified and copied under it and nowhere else."""
    from azure.storage.blob import BlobServiceClient

    base = azure_store.rsplit("/", 1)[0]
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(
        base.removeprefix("azure://")
    )
    ids = {}
    for prefix in AZURE_PREFIXES:
        store = f"{base}/{prefix}"
        ids[prefix] = run_backup(cli, seeded_sqlite, store)["id"]
        assert [e["id"] for e in listed(cli, store)] == [ids[prefix]], prefix
        checked = cli("backup", "verify", "--all", "--store", store)
        assert checked.exit_code == 0, (prefix, checked.stderr)
    names = sorted(b.name for b in client.list_blobs())
    for prefix, backup_id in ids.items():
        assert f"{prefix}/{backup_id}/manifest.json" in names, (prefix, names)
    # Nothing outside the named prefixes (apart from each prefix's lock blob).
    allowed = tuple(f"{p}/" for p in AZURE_PREFIXES)
    assert all(n.startswith(allowed) for n in names), names


def test_unicode_normalisation_equal_names_are_different_sources(cli, tmp_path: Path) -> None:
    """`café.db` in NFC and in NFD are two files on Linux: each keeps its own backups, and
    --source / the configured database pick the right one (never the look-alike)."""
    import unicodedata

    nfc = tmp_path / unicodedata.normalize("NFC", "café.db")
    nfd = tmp_path / unicodedata.normalize("NFD", "café.db")
    assert str(nfc) != str(nfd)
    _make(nfc, [], rows=10)
    _make(nfd, [], rows=20)
    store = tmp_path / "store"
    first = run_backup(cli, f"sqlite:///{nfc}", store)
    second = run_backup(cli, f"sqlite:///{nfd}", store)
    assert first["row_counts"] == {"t": 10} and second["row_counts"] == {"t": 20}
    for path, want in ((nfc, first["id"]), (nfd, second["id"])):
        only = json_of(
            cli("backup", "list", "--store", str(store), "--source", str(path), "--json")
        )["backups"]
        assert [e["id"] for e in only] == [want], (path, only)
        out = tmp_path / f"r{len(str(path))}.db"
        done = cli(
            "backup", "restore", "--latest", "--source", str(path), "--target", str(out),
            "--yes", "--store", str(store),
        )  # fmt: skip
        assert done.exit_code == 0, done.stderr
        assert _shape(out)["rows"] == (10 if path == nfc else 20)


def test_tables_that_look_internal_and_virtual_tables_are_counted(cli, tmp_path: Path) -> None:
    """`LIKE 'sqlite_%'` skipped user tables such as "sqliteData" ('_' is a wildcard, LIKE
    ignores case), so verify never compared their rows. FTS5, R*Tree, WITHOUT ROWID, STRICT
    and AUTOINCREMENT tables are counted too; SQLite's own sqlite_* tables are not."""
    src = tmp_path / "v.db"
    conn = sqlite3.connect(src)
    conn.executescript(
        """
        CREATE TABLE sqliteData(x); INSERT INTO sqliteData VALUES (1), (2), (3);
        CREATE TABLE "SQLITE-ish"(x); INSERT INTO "SQLITE-ish" VALUES (1);
        CREATE VIRTUAL TABLE f USING fts5(body); INSERT INTO f VALUES ('hello'), ('world');
        CREATE VIRTUAL TABLE r USING rtree(id, minx, maxx); INSERT INTO r VALUES (1, 0, 1);
        CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID; INSERT INTO w VALUES ('a', 1);
        CREATE TABLE s(id INTEGER PRIMARY KEY AUTOINCREMENT, v); INSERT INTO s(v) VALUES (1);
        CREATE TABLE st(id INTEGER PRIMARY KEY, v TEXT) STRICT; INSERT INTO st VALUES (1, 'a');
        """
    )
    conn.commit()
    conn.close()
    store = tmp_path / "store"
    manifest = run_backup(cli, f"sqlite:///{src}", store)
    counts = manifest["row_counts"]
    assert counts["sqliteData"] == 3 and counts["SQLITE-ish"] == 1
    assert counts["f"] == 2 and counts["r"] == 1 and counts["w"] == 1 and counts["st"] == 1
    assert not any(name.lower().startswith("sqlite_") for name in counts)
    assert cli("backup", "verify", manifest["id"], "--store", str(store)).exit_code == 0
    # The counts are what verify compares: a wrong one is caught.
    path = store / manifest["id"] / "manifest.json"
    doc = json.loads(path.read_text())
    doc["row_counts"]["sqliteData"] = 4
    write_resealed(path, doc)
    bad = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert bad.exit_code == 3 and "sqliteData: 3 (manifest 4)" in bad.stderr, bad.stderr


def test_a_read_only_store_can_be_verified_restored_and_copied_from(cli, tmp_path: Path) -> None:
    """A store on a read-only mount (a DR copy, a backup disk mounted ro): verify, restore into
    a new target and copy work (no lock, nothing recorded, with a warning); run says why it
    cannot; restore --force onto an existing database refuses cleanly (its safety backup
    cannot be written), the target unchanged."""
    import sys

    py = sys.executable
    url = _blob_db(tmp_path / "src.db")
    store = tmp_path / "store"
    backup_id = run_backup(cli, url, store)["id"]
    before = sorted(p.name for p in (store / backup_id).iterdir())
    ro = tmp_path / "ro"
    ro.mkdir()
    probe = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "true"], capture_output=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip("unshare -m is not allowed here (needs root)")
    existing = tmp_path / "existing.db"
    _make(existing, [], rows=5)
    m = f"{py} -m emrops backup"
    script = (
        f"mount --bind {store} {ro} && mount -o remount,bind,ro {ro} && "
        f"{m} run --db {url} --store {ro}; echo rc=$?; "
        f"{m} verify {backup_id} --store {ro}; echo rc=$?; "
        f"{m} restore {backup_id} --target {tmp_path}/new.db --store {ro} --yes; echo rc=$?; "
        f"{m} restore {backup_id} --target {existing} --store {ro} --yes --force; echo rc=$?; "
        f"{m} copy {backup_id} --to {tmp_path}/copy --store {ro}; echo rc=$?"
    )
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    codes = [line for line in out.stdout.splitlines() if line.startswith("rc=")]
    assert codes == ["rc=1", "rc=0", "rc=0", "rc=1", "rc=0"], (out.stdout, out.stderr)
    text = " ".join(out.stderr.split())
    assert "only verify, restore and copy (from it) work there" in text
    assert "goes on without its lock" in text and "Traceback" not in text
    assert _shape(tmp_path / "new.db")["rows"] == 3000
    assert _shape(existing)["rows"] == 5  # refused before anything changed
    assert (tmp_path / "copy" / backup_id / "manifest.json").exists()
    assert sorted(p.name for p in (store / backup_id).iterdir()) == before  # nothing written
