"""The backup store layer under failure injection and hostile input, campaign 11: SAS tokens
without a right or expired, container-scoped SAS tokens, blobs and folders that are not
backups, documents far larger than any emrops writes, swapped payloads, uploads killed
midway. Everything runs through the CLI against Azurite and local folders.

The standard: no backup reads as good when it is not, no expected failure ends in a
traceback or "unexpected ...", nothing half-written is later taken as a backup, and no
secret is printed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
from azure.storage.blob import (
    BlobLeaseClient,
    BlobServiceClient,
    ContainerClient,
    generate_container_sas,
)

from tests.backup.conftest import DEV_KEY, json_of, listed, restore_new, run_backup

PAD = 9 << 20  # past the 8 MiB a stored document may have


def _box(azurite: str, url: str) -> ContainerClient:
    name = url.removeprefix("azure://").split("/")[0]
    return BlobServiceClient.from_connection_string(azurite).get_container_client(name)


def _sas_conn(
    azurite: str, url: str, permission: str, minutes: float = 60, start: float | None = None
) -> tuple[str, str]:
    """A connection string with a SAS token for the store's container only, and its sig;
    ``start``: minutes from now before which it is not valid."""
    container = url.removeprefix("azure://").split("/")[0]
    endpoint = azurite.split("BlobEndpoint=")[1].rstrip(";")
    sas = generate_container_sas(
        "devstoreaccount1",
        container,
        account_key=DEV_KEY,
        permission=permission,
        expiry=datetime.now(UTC) + timedelta(minutes=minutes),
        start=None if start is None else datetime.now(UTC) + timedelta(minutes=start),
    )
    return f"BlobEndpoint={endpoint};SharedAccessSignature={sas}", parse_qs(sas)["sig"][0]


def _no_secret(done, sig: str) -> None:  # type: ignore[no-untyped-def]
    for shown in (done.stdout, done.stderr):
        assert sig not in shown and quote(sig, safe="") not in shown
        assert DEV_KEY not in shown and "Traceback" not in shown and "unexpected" not in shown


def _blobs(azurite: str, url: str) -> list[str]:
    return sorted(b.name for b in _box(azurite, url).list_blobs(name_starts_with="emrsim/"))


# --- SAS tokens ------------------------------------------------------------------------------


def test_a_container_sas_with_every_right_runs_lists_verifies_and_rotates(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """Every write began with create_container, which a SAS for the container may not do
    (403): a least-privilege SAS with racwdlt could take no backup at all (exit 1)."""
    _box(azurite, azure_store).create_container()  # the SAS owner made it
    conn, sig = _sas_conn(azurite, azure_store, "racwdlt")
    env = {"EMROPS_AZURE_STORAGE_CONNECTION_STRING": conn}
    for _ in range(2):
        done = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store, env=env)
        assert done.exit_code == 0, done.stderr
        _no_secret(done, sig)
    done = cli("backup", "verify", "--all", "--store", azure_store, env=env)
    assert done.exit_code == 0, done.stderr
    done = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store, env=env)
    assert done.exit_code == 0, done.stderr
    assert len(listed(cli, azure_store)) == 1


def test_a_container_sas_for_a_missing_container_says_so(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    conn, sig = _sas_conn(azurite, azure_store, "racwdlt")
    env = {"EMROPS_AZURE_STORAGE_CONNECTION_STRING": conn}
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store, env=env)
    assert done.exit_code == 1
    assert (
        f"Error: the container of {azure_store} does not exist and these credentials may not "
        "create it" in done.stderr
    ), done.stderr
    _no_secret(done, sig)


@pytest.mark.parametrize(
    ("permission", "command", "named"),
    [
        ("rl", "run", "the credentials lack the write permission"),
        ("wacdt", "run", "the credentials lack the read permission"),
        ("wacdt", "list", "the credentials lack the list permission"),
        ("rwl", "rotate", "the credentials lack the delete permission"),
        ("rl", "verify", "the credentials lack the write permission"),
    ],
)
def test_a_sas_without_a_right_names_it_and_changes_nothing(
    cli, seeded_sqlite: str, azure_store: str, azurite: str, permission, command, named
) -> None:
    """Was "Azure refused access ... sp= needs r, w, d, l, a, c and t" whatever was missing
    (and, for a container SAS, always the create_container refusal)."""
    first = run_backup(cli, seeded_sqlite, azure_store)["id"]
    run_backup(cli, seeded_sqlite, azure_store)
    assert cli("backup", "verify", "--all", "--store", azure_store).exit_code == 0
    before = _blobs(azurite, azure_store)
    conn, sig = _sas_conn(azurite, azure_store, permission)
    args = {
        "run": ["run", "--db", seeded_sqlite],
        "list": ["list"],
        "rotate": ["rotate", "--keep-last", "1"],
        "verify": ["verify", first],
    }[command]
    done = cli("backup", *args, "--store", azure_store,
               env={"EMROPS_AZURE_STORAGE_CONNECTION_STRING": conn})  # fmt: skip
    assert done.exit_code == 1, done.stderr
    assert named in done.stderr and "Try: give the SAS token the" in done.stderr
    _no_secret(done, sig)
    assert _blobs(azurite, azure_store) == before  # nothing written, nothing deleted
    assert len(listed(cli, azure_store)) == 2
    # the lock is free again at once (no lease left held for a minute)
    assert cli("backup", "rotate", "--keep-last", "5", "--store", azure_store).exit_code == 0


def test_an_expired_sas_is_named_before_any_request(cli, azure_store: str, azurite: str) -> None:
    """Was Azure's bare 403 "Server failed to authenticate the request"."""
    conn, sig = _sas_conn(azurite, azure_store, "racwdlt", minutes=-30)
    for args in (["list"], ["verify", "--all"], ["rotate", "--keep-last", "1"]):
        done = cli("backup", *args, "--store", azure_store,
                   env={"EMROPS_AZURE_STORAGE_CONNECTION_STRING": conn})  # fmt: skip
        assert done.exit_code == 1, done.stderr
        assert f"Error: the SAS token for {azure_store} expired at " in done.stderr
        assert "Try: generate a new SAS token" in done.stderr
        _no_secret(done, sig)


def test_a_sas_not_valid_yet_is_named_before_any_request(cli, azure_store: str, azurite: str):
    """Was Azure's bare 403 "Server failed to authenticate the request"."""
    conn, sig = _sas_conn(azurite, azure_store, "racwdlt", start=30)
    done = cli("backup", "list", "--store", azure_store,
               env={"EMROPS_AZURE_STORAGE_CONNECTION_STRING": conn})  # fmt: skip
    assert done.exit_code == 1, done.stderr
    assert f"Error: the SAS token for {azure_store} is not valid before " in done.stderr
    assert "fix this host's clock" in done.stderr
    _no_secret(done, sig)


# --- things in the store that are not backups ------------------------------------------------

GHOST = "20260101T000000.000Z-abcdef"  # an id folder with no manifest (a crashed run's, say)


def _nest(store: str, azurite: str, name: str) -> None:
    """Put a file at ``name`` (under the store), nested deeper than emrops writes."""
    if store.startswith("azure://"):
        _box(azurite, store).upload_blob(f"emrsim/{name}", b"x", overwrite=True)
    else:
        path = Path(store) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


@pytest.fixture(params=["local", "azure"])
def any_store(request, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return str(tmp_path / "backups")
    return str(request.getfixturevalue("azure_store"))


def test_a_nested_folder_under_an_id_neither_blocks_runs_nor_rotate(
    cli, seeded_sqlite: str, any_store: str, request
) -> None:
    """``<id>/sub/x`` in the store: every later ``backup run`` failed in the cleanup of
    interrupted runs (Azure: "refusing the name ...", local: "unexpected IsADirectoryError"),
    and rotate failed on such a backup after deleting its manifest."""
    azurite = request.getfixturevalue("azurite") if any_store.startswith("azure") else ""
    old = run_backup(cli, seeded_sqlite, any_store)["id"]
    _nest(any_store, azurite, f"{GHOST}/sub/x")
    _nest(any_store, azurite, f"{old}/sub/nested.bin")
    new = run_backup(cli, seeded_sqlite, any_store)["id"]
    assert [e["id"] for e in listed(cli, any_store)] == [old, new]
    done = cli("backup", "verify", "--all", "--store", any_store)
    assert done.exit_code == 0, done.stderr
    done = cli("backup", "rotate", "--keep-last", "1", "--store", any_store, "--json")
    assert json_of(done)["deleted"] == [old]
    assert [e["id"] for e in listed(cli, any_store)] == [new]
    assert cli("backup", "run", "--db", seeded_sqlite, "--store", any_store).exit_code == 0


def test_blobs_that_are_not_backups_are_not_listed(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    real = run_backup(cli, seeded_sqlite, azure_store)["id"]
    box = _box(azurite, azure_store)
    for name in ("emrsim", "emrsim/", "emrsim//x", "emrsim/readme.txt", f"emrsim/{GHOST}",
                 f"emrsim/{GHOST}x/manifest.json", "emrsimother/x/manifest.json",
                 f"emrsim/{GHOST}/manifest.json/x"):  # fmt: skip
        box.upload_blob(name, b"{}", overwrite=True)
    assert [(e["id"], e["verified"]) for e in listed(cli, azure_store)] == [
        (f"{GHOST}x", "broken"),
        (real, "never"),
    ]
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store)
    assert done.exit_code == 0, done.stderr
    done = cli("backup", "verify", "--all", "--store", azure_store)
    assert done.exit_code == 3 and f"{GHOST}x: manifest" in done.stderr
    states = {e["id"]: e["verified"] for e in listed(cli, azure_store)}
    assert states[real] == "ok" and states[f"{GHOST}x"] == "broken" and len(states) == 3


# --- documents larger than emrops writes -----------------------------------------------------


def _put(store: str, azurite: str, name: str, data: bytes) -> None:
    if store.startswith("azure://"):
        _box(azurite, store).upload_blob(f"emrsim/{name}", data, overwrite=True)
    else:
        (Path(store) / name).write_bytes(data)


def _get(store: str, azurite: str, name: str) -> bytes:
    if store.startswith("azure://"):
        return bytes(_box(azurite, store).download_blob(f"emrsim/{name}").readall())
    return (Path(store) / name).read_bytes()


def test_a_manifest_padded_past_8_mib_is_broken_not_read_whole(
    cli, seeded_sqlite: str, any_store: str, request
) -> None:
    """A valid manifest followed by 9 MiB of blanks (valid JSON, seal intact) was read whole
    into memory, listed and verified as a good backup: nothing bounded what a hostile store
    made emrops allocate."""
    azurite = request.getfixturevalue("azurite") if any_store.startswith("azure") else ""
    backup_id = run_backup(cli, seeded_sqlite, any_store)["id"]
    text = _get(any_store, azurite, f"{backup_id}/manifest.json")
    _put(any_store, azurite, f"{backup_id}/manifest.json", text + b" " * PAD)
    [entry] = listed(cli, any_store)
    assert entry["verified"] == "broken" and "larger than 8 MiB" in entry["reason"]
    done = cli("backup", "verify", backup_id, "--store", any_store)
    assert done.exit_code == 3 and "larger than 8 MiB" in done.stderr
    done = cli("backup", "restore", backup_id, "--target", "/nonexistent/x.db", "--yes",
               "--store", any_store)  # fmt: skip
    assert done.exit_code == 3 and "larger than 8 MiB" in done.stderr


def test_padded_verification_and_pin_records_are_invalid_not_read_whole(
    cli, seeded_sqlite: str, any_store: str, request
) -> None:
    azurite = request.getfixturevalue("azurite") if any_store.startswith("azure") else ""
    backup_id = run_backup(cli, seeded_sqlite, any_store, "--pin")["id"]
    assert cli("backup", "verify", backup_id, "--store", any_store).exit_code == 0
    for name in ("verification.json", "pin.json"):
        text = _get(any_store, azurite, f"{backup_id}/{name}")
        _put(any_store, azurite, f"{backup_id}/{name}", text + b" " * PAD)
    [entry] = listed(cli, any_store)
    assert entry["verified"] == "invalid" and "larger than 8 MiB" in entry["reason"]
    assert entry["pinned"] is True  # an unreadable pin record still pins


# --- hostile manifests -----------------------------------------------------------------------


def _hostile(doc: dict, case: str, backup_id: str) -> bytes:  # type: ignore[type-arg]
    files = doc["files"]
    changed: object
    if case == "not json":
        return b"\x00\xff{not json"
    if case == "array":
        return b"[1, 2, 3]"
    if case == "deep":
        return b"[" * 100_000 + b"]" * 100_000
    changed = json.loads(json.dumps(doc))
    assert isinstance(changed, dict)
    changed["id"] = backup_id  # in its own folder: only the case's change is wrong
    f0 = changed["files"][0]
    if case == "dotdot":
        f0["name"] = "../../etc/passwd"
    elif case == "absolute":
        f0["name"] = "/etc/passwd"
    elif case == "nul":
        f0["name"] = "database\x00.zst"
    elif case == "negative size":
        f0["size"] = -1
    elif case == "huge size":
        f0["size"] = 10**30
    elif case == "short checksum":
        f0["sha256"] = f0["sha256"][:10]
    elif case == "wrong types":
        changed["row_counts"] = ["x"]
        f0["size"] = "12"
    elif case == "other id":
        changed["id"] = "20200101T000000.000Z-000000"
    elif case == "duplicate":
        changed["files"] = [files[0], files[0]]
    elif case == "deep engine_info":
        nested: list[object] = []
        for _ in range(600):
            nested = [nested]
        changed["engine_info"] = {"x": nested}
    from emrops.backup.manifest import seal_of

    changed.pop("seal", None)
    changed["seal"] = seal_of(changed)
    return json.dumps(changed).encode()


CASES = ["not json", "array", "deep", "dotdot", "absolute", "nul", "negative size",
         "huge size", "short checksum", "wrong types", "other id", "duplicate",
         "deep engine_info"]  # fmt: skip


def test_hostile_manifests_are_broken_never_followed(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """Each case in its own backup of one store: list, verify, rotate and restore go on past
    them, read nothing outside the store and never crash."""
    store = tmp_path / "backups"
    good = run_backup(cli, seeded_sqlite, store)["id"]
    doc = json.loads((store / good / "manifest.json").read_text())
    ids = {}
    for case in CASES:
        backup_id = run_backup(cli, seeded_sqlite, store)["id"]
        (store / backup_id / "manifest.json").write_bytes(_hostile(doc, case, backup_id))
        ids[backup_id] = case
    entries = {e["id"]: e for e in listed(cli, store)}
    assert entries[good]["verified"] == "never"
    for backup_id, case in ids.items():
        # a size past any disk is schema-valid: listed, and verify fails on it
        state = "never" if case == "huge size" else "broken"
        assert entries[backup_id]["verified"] == state, (case, entries[backup_id])
        done = cli("backup", "verify", backup_id, "--store", str(store))
        assert done.exit_code == 3, (case, done.stderr)
        assert "Traceback" not in done.stderr and "unexpected" not in done.stderr
        done = cli("backup", "restore", backup_id, "--target", str(tmp_path / "r.db"),
                   "--yes", "--store", str(store))  # fmt: skip
        assert done.exit_code in (1, 3) and "unexpected" not in done.stderr, (case, done.stderr)
        assert not (tmp_path / "r.db").exists()
    assert cli("backup", "verify", good, "--store", str(store)).exit_code == 0
    done = cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json")
    assert json_of(done)["deleted"] == []  # a broken manifest is kept; the good one is newest
    assert len(listed(cli, store)) == 1 + len(CASES)


# --- store URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "shown"),
    [
        ("/x?sv=2024&sig=SECRETSIG", "it holds a secret (a SAS token?)"),  # a SAS URL pasted
        ("/a/../b", "the prefix must be plain folder names"),
        ("/..", "the prefix must be plain folder names"),
        ("/a//b", "the prefix must be plain folder names"),
        ("/a\\b", "the prefix must be plain folder names"),
        ("?sig=SECRETSIG", "it holds a secret"),
        ("?x=1", "the container name is missing or not a plain name"),
    ],
)
def test_a_store_url_azure_would_resolve_elsewhere_is_refused_masked(
    cli, seeded_sqlite: str, azure_store: str, azurite: str, suffix: str, shown: str
) -> None:
    """Was: a SAS pasted into the store URL became part of every blob name and was printed
    (``backup ... -> azure://c/x?sig=...``); ``a/../b`` read "403 ... failed to authenticate"
    (the client resolved the dot segment, the signature no longer matched). Prefixes with
    "#", "?" or "%" are still used as written (test_torture)."""
    store = azure_store.split("/emrsim")[0] + suffix
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", store)
    assert done.exit_code == 2, done.stderr
    assert done.stderr.startswith("Error: invalid Azure store ") and shown in done.stderr
    assert "SECRETSIG" not in done.stdout + done.stderr
    service = BlobServiceClient.from_connection_string(azurite)
    name = azure_store.removeprefix("azure://").split("/")[0]
    assert name not in [c.name for c in service.list_containers()]


# --- payloads swapped or inflated ------------------------------------------------------------


def test_a_blob_that_decodes_past_its_raw_size_fails_its_check_not_the_scratch_disk(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A data file replaced by a small zstd frame of 256 MiB of zeros (a swapped blob, or a
    decompression bomb) was decoded whole into the scratch folder before its checksum was
    compared: with 64 MiB of room, verify said "the scratch folder ... is full ... nothing was
    recorded" (exit 1, the backup never marked failed) instead of exit 3 naming the file."""
    import resource

    import zstandard

    from tests.backup.conftest import emrops_proc

    store = tmp_path / "backups"
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    bomb = zstandard.ZstdCompressor().compress(bytes(256 << 20))
    (store / backup_id / "database.sqlite.zst").write_bytes(bomb)
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))

    done = emrops_proc("backup", "verify", backup_id, "--store", str(store),
                       env={"TMPDIR": str(scratch)}, preexec=small_disk)  # fmt: skip
    assert done.returncode == 3, done.stderr
    assert "checksum database.sqlite.zst: stored " in done.stderr, done.stderr
    assert "full" not in done.stderr
    assert listed(cli, store)[0]["verified"] == "failed"


def test_swapped_blobs_and_manifests_fail_verify_naming_them(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    import sqlite3

    first = run_backup(cli, seeded_sqlite, azure_store)["id"]
    with sqlite3.connect(seeded_sqlite.removeprefix("sqlite:///")) as conn:
        conn.execute("CREATE TABLE extra(x)")
    second = run_backup(cli, seeded_sqlite, azure_store)["id"]
    box = _box(azurite, azure_store)
    data = box.download_blob(f"emrsim/{second}/database.sqlite.zst").readall()
    box.upload_blob(f"emrsim/{first}/database.sqlite.zst", data, overwrite=True)
    manifest = box.download_blob(f"emrsim/{first}/manifest.json").readall()
    box.upload_blob(f"emrsim/{second}/manifest.json", manifest, overwrite=True)
    done = cli("backup", "verify", "--all", "--store", azure_store)
    assert done.exit_code == 3
    assert f"{first}: checksum database.sqlite.zst: stored " in done.stderr
    assert f"{second}: manifest: manifest {second}/manifest.json is invalid: id " in done.stderr
    states = {e["id"]: e["verified"] for e in listed(cli, azure_store)}
    assert states == {first: "failed", second: "broken"}


# --- a run killed during its upload ----------------------------------------------------------


def _noise_db(path: Path, megabytes: int) -> str:
    """An incompressible SQLite database: its backup is several 8 MiB blocks."""
    import os
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB)")
        for _ in range(megabytes):
            rows = [(os.urandom(100_000),) for _ in range(10)]
            conn.executemany("INSERT INTO t(b) VALUES (?)", rows)
    conn.close()
    return f"sqlite:///{path}"


def _bytes_read(pid: int) -> int:
    text = Path(f"/proc/{pid}/io").read_text()
    return int(text.split("rchar:")[1].split()[0])


def test_a_run_killed_during_its_upload_leaves_nothing_taken_as_a_backup(
    cli, seeded_sqlite: str, azure_store: str, azurite: str, tmp_path: Path
) -> None:
    """SIGKILL while blocks are staged: nothing new is listed, verified or counted by rotate; the
    lock says its holder is dead and when it frees (was only "is locked: backup run by pid N"),
    and once the lease is gone the next run takes the lock over and publishes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    good = run_backup(cli, seeded_sqlite, azure_store)["id"]
    assert cli("backup", "verify", good, "--store", azure_store).exit_code == 0
    noise = _noise_db(tmp_path / "noise.db", 40)
    env = {**os.environ, "EMROPS_AZURE_STORAGE_CONNECTION_STRING": azurite}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emrops", "backup", "run", "--db", noise, "--store", azure_store],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    lock = _box(azurite, azure_store).get_blob_client("emrsim/.lock")
    deadline = time.monotonic() + 30
    while lock.get_blob_properties().metadata.get("pid") != str(proc.pid):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    # kill once half the database was read (/proc/PID/io): blocks are being staged then
    read_at_lock = _bytes_read(proc.pid)
    while _bytes_read(proc.pid) < read_at_lock + (20 << 20):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed, not finished
    entries = listed(cli, azure_store)
    assert [e["id"] for e in entries] == [good], "a killed upload was published"
    busy = cli("backup", "restore", good, "--target", str(tmp_path / "r.db"), "--yes",
               "--store", azure_store)  # fmt: skip
    assert busy.exit_code == 75 and not (tmp_path / "r.db").exists()
    busy = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store)
    assert busy.exit_code == 75
    assert f"(pid {proc.pid} is no longer running on this host: its lease runs out within 60 s" in (
        busy.stderr
    )
    assert "Try: run it again in 60 s" in busy.stderr
    BlobLeaseClient(lock).break_lease(lease_break_period=0)  # what 60 s would do
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store, "--json")
    assert done.exit_code == 0 and "taking over a stale lock" in done.stderr
    newest = json.loads(done.stdout)["manifest"]["id"]
    assert [e["id"] for e in listed(cli, azure_store)] == [good, newest]
    restore_new(cli, azure_store, good, str(tmp_path / "r.db"))
    done = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store, "--json")
    assert json_of(done)["deleted"] == []  # the new one is not verified yet: nothing goes
    assert all("emrsim/" + good in n or "emrsim/" + newest in n or n == "emrsim/.lock"
               for n in _blobs(azurite, azure_store))  # fmt: skip


# --- links in a local store ------------------------------------------------------------------


def test_links_to_elsewhere_are_damage_never_followed_nor_a_block(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A verification.json or pin.json that is a link out of the store stopped list, verify
    --all and rotate for every backup ("refusing ...: it resolves to ..."); a link in an
    unpublished id folder, or an id-named folder that is a link, stopped every later run in
    the cleanup of interrupted runs; and that cleanup deleted .staging-* files in the folder
    such a link pointed to. Now: the record is invalid (a pin still pins), a data file that is
    a link fails its check, the links are removed or replaced (never followed), and nothing
    outside the store changes."""
    store = tmp_path / "backups"
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("secret", ".staging-keep", "database.sqlite.zst"):
        (outside / name).write_text("outside")
    first = run_backup(cli, seeded_sqlite, store)["id"]
    second = run_backup(cli, seeded_sqlite, store)["id"]
    (store / first / "verification.json").symlink_to(outside / "secret")
    (store / first / "pin.json").symlink_to(outside / "secret")
    (store / second / "database.sqlite.zst").unlink()
    (store / second / "database.sqlite.zst").symlink_to(outside / "database.sqlite.zst")
    (store / GHOST).mkdir()
    (store / GHOST / "database.sqlite.zst").symlink_to(outside / "secret")
    (store / "20260101T000000.000Z-aaaaaa").symlink_to(outside, target_is_directory=True)
    entries = {e["id"]: e for e in listed(cli, store)}
    assert entries[first]["verified"] == "invalid" and entries[first]["pinned"] is True
    assert "resolves to" in entries[first]["reason"]
    done = cli("backup", "verify", "--all", "--store", str(store))
    assert done.exit_code == 3, done.stderr
    assert f"{second}: checksum database.sqlite.zst: refusing " in done.stderr
    assert first not in done.stderr.split("Error:")[1]  # the first verified fine
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store))
    assert done.exit_code == 0, done.stderr
    assert not (store / GHOST).exists()
    done = cli("backup", "rotate", "--keep-last", "1", "--store", str(store))
    assert done.exit_code == 0, done.stderr
    assert sorted(p.name for p in outside.iterdir()) == [
        ".staging-keep",
        "database.sqlite.zst",
        "secret",
    ]
    assert {p.read_text() for p in outside.iterdir()} == {"outside"}


def test_a_blob_in_the_archive_tier_is_named_and_the_others_still_checked(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """A blob moved to the Archive tier (a lifecycle rule, by hand) cannot be read until it is
    rehydrated: verify --all stopped at it ("Azure Blob Storage error ...: This operation is
    not permitted on an archived blob", no hint), the backups after it never checked, and an
    archived manifest stopped ``backup list`` for every backup."""
    first = run_backup(cli, seeded_sqlite, azure_store)["id"]
    second = run_backup(cli, seeded_sqlite, azure_store)["id"]
    third = run_backup(cli, seeded_sqlite, azure_store)["id"]
    box = _box(azurite, azure_store)
    box.get_blob_client(f"emrsim/{first}/database.sqlite.zst").set_standard_blob_tier("Archive")
    box.get_blob_client(f"emrsim/{second}/manifest.json").set_standard_blob_tier("Archive")
    done = cli("backup", "verify", "--all", "--store", azure_store)
    assert done.exit_code == 1, done.stderr
    assert f"{first}/database.sqlite.zst in backup store {azure_store} is in the Archive tier" in (
        done.stderr
    )
    assert "Try: rehydrate it" in done.stderr and "2 of 3 backups could not be checked" in (
        done.stderr
    )
    states = {e["id"]: e["verified"] for e in listed(cli, azure_store)}
    assert states == {first: "never", second: "broken", third: "ok"}
    done = cli("backup", "restore", first, "--target", "/nonexistent/x.db", "--yes",
               "--store", azure_store)  # fmt: skip
    assert done.exit_code == 1 and "is in the Archive tier" in done.stderr
    done = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store, "--json")
    assert json_of(done)["deleted"] == [first]  # never verified, older than the verified one


# --- list while a rotate deletes -------------------------------------------------------------


def test_list_while_rotate_deletes_never_fails(cli, seeded_sqlite: str, tmp_path: Path) -> None:
    """``backup list`` takes no lock; a backup deleted between listing the folders and reading
    its manifest ended the whole listing in "backup ... not found" (exit 1)."""
    import shutil
    import subprocess
    import sys

    from emrops.backup.manifest import seal_of

    store = tmp_path / "backups"
    good = run_backup(cli, seeded_sqlite, store)["id"]
    assert cli("backup", "verify", good, "--store", str(store)).exit_code == 0
    doc = json.loads((store / good / "manifest.json").read_text())
    for i in range(200):  # older copies, unverified: rotate deletes them all
        copy = f"20200101T000000.{i:03d}Z-{i:06x}"
        shutil.copytree(store / good, store / copy)
        (store / copy / "verification.json").unlink()
        fields = {k: v for k, v in doc.items() if k != "seal"}
        fields |= {"id": copy, "created_at": f"2020-01-01T00:00:00.{i:03d}Z"}
        (store / copy / "manifest.json").write_text(json.dumps({**fields, "seal": seal_of(fields)}))
    rotate = subprocess.Popen(
        [sys.executable, "-m", "emrops", "backup", "rotate", "--keep-last", "1", "--store",
         str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    failures, lists = [], 0
    while rotate.poll() is None:
        done = cli("backup", "list", "--store", str(store), "--json")
        lists += 1
        if done.exit_code != 0:
            failures.append(done.stderr)
    assert rotate.returncode == 0, rotate.stderr.read() if rotate.stderr else ""
    assert failures == [], f"{len(failures)} of {lists} listings failed: {failures[0]}"
    assert [e["id"] for e in listed(cli, store)] == [good]


def test_a_file_name_the_store_refuses_neither_blocks_rotate_nor_runs(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A file named ``a\\b`` in a backup's folder (local store): rotate deleted the manifest,
    then stopped on "refusing the name ..." (exit 1), leaving a half-deleted backup."""
    store = tmp_path / "backups"
    old = run_backup(cli, seeded_sqlite, store)["id"]
    (store / old / "a\\b").write_bytes(b"x")
    (store / GHOST).mkdir()
    (store / GHOST / "x\\y").write_bytes(b"x")
    new = run_backup(cli, seeded_sqlite, store)["id"]
    assert cli("backup", "verify", "--all", "--store", str(store)).exit_code == 0
    done = cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json")
    assert json_of(done)["deleted"] == [old]
    assert sorted(p.name for p in store.iterdir() if p.name != ".lock") == [new]


def test_links_planted_at_the_lock_or_a_staging_name_are_never_written_through(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A ``.lock`` that is a link: every command truncated the link's target and wrote the
    holder into it. A link at a staging name (``<id>/.staging-verification.json.<pid>``,
    predictable): verify truncated its target and wrote the record into it."""
    import os

    store = tmp_path / "backups"
    precious = tmp_path / "precious"
    precious.write_text("precious")
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    staging = store / backup_id / f".staging-verification.json.{os.getpid()}"
    staging.symlink_to(precious)
    done = cli("backup", "verify", backup_id, "--store", str(store))
    assert done.exit_code == 0, done.stderr
    assert precious.read_text() == "precious"
    assert json.loads((store / backup_id / "verification.json").read_text())["ok"] is True
    (store / ".lock").unlink()
    (store / ".lock").symlink_to(precious)
    for args in (
        ["run", "--db", seeded_sqlite],
        ["rotate", "--keep-last", "1"],
        ["pin", backup_id],
    ):
        done = cli("backup", *args, "--store", str(store))
        assert done.exit_code == 1, done.stderr
        assert f"Error: the lock file {store / '.lock'} is a symbolic link to " in done.stderr
        assert "Try: remove it" in done.stderr
    assert precious.read_text() == "precious"
    assert len(listed(cli, store)) == 1


@pytest.mark.parametrize(
    "content",
    ["[" * 4000, '{"host": ["h"], "pid": "1", "operation": 2, "since": null}', "[1]", "\x00\xff"],
)
def test_a_forged_lock_file_names_no_holder_and_is_taken_over(
    cli, seeded_sqlite: str, tmp_path: Path, content: str
) -> None:
    """A .lock nested 4000 deep ended every command that locks in "unexpected RecursionError";
    one with fields of the wrong types was described as a holder."""
    store = tmp_path / "backups"
    store.mkdir()
    (store / ".lock").write_text(content)
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store))
    assert done.exit_code == 0, done.stderr
    assert "taking over" not in done.stderr
    assert len(listed(cli, store)) == 1


# --- concurrent commands ---------------------------------------------------------------------


def test_two_runs_and_a_rotate_at_once_one_holds_the_lock_the_others_exit_75(
    cli, seeded_sqlite: str, any_store: str, request
) -> None:
    """Already handled (a regression test): whoever loses the lock exits 75 naming the holder,
    no backup is lost or published twice, and the lock is free afterwards."""
    import os
    import subprocess
    import sys

    env = dict(os.environ)
    if any_store.startswith("azure"):
        env["EMROPS_AZURE_STORAGE_CONNECTION_STRING"] = request.getfixturevalue("azurite")
    first = run_backup(cli, seeded_sqlite, any_store)["id"]
    assert cli("backup", "verify", first, "--store", any_store).exit_code == 0
    commands = [["run", "--db", seeded_sqlite], ["run", "--db", seeded_sqlite],
                ["rotate", "--keep-last", "1"]]  # fmt: skip
    procs = [
        subprocess.Popen([sys.executable, "-m", "emrops", "backup", *args, "--store", any_store],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for args in commands
    ]  # fmt: skip
    results = [(p.wait(60), p.stdout.read(), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    for code, _, err in results:
        assert code in (0, 75), err
        if code == 75:
            assert f"Error: backup store {any_store}" in err and " is locked: backup " in err
    published = [out.strip() for (code, out, _), args in zip(results, commands, strict=True)
                 if code == 0 and args[0] == "run"]  # fmt: skip
    ids = [e["id"] for e in listed(cli, any_store)]
    assert ids == sorted([first, *published])  # rotate keeps unverified newer ones
    assert cli("backup", "verify", "--all", "--store", any_store).exit_code == 0


@pytest.mark.slow
def test_more_than_one_page_of_blobs_every_backup_is_seen(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """Already handled (a regression test): Azure lists 5,000 blobs a page; with 5,100 blobs
    sorted before the backups, list, verify and rotate still see every backup (~25 s)."""
    from concurrent.futures import ThreadPoolExecutor

    first = run_backup(cli, seeded_sqlite, azure_store)["id"]
    box = _box(azurite, azure_store)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda i: box.upload_blob(f"emrsim/0000-junk/{i:05d}", b""), range(5100)))
    second = run_backup(cli, seeded_sqlite, azure_store)["id"]
    assert [e["id"] for e in listed(cli, azure_store)] == [first, second]
    assert cli("backup", "verify", "--all", "--store", azure_store).exit_code == 0
    done = cli("backup", "rotate", "--keep-last", "1", "--store", azure_store, "--json")
    assert json_of(done)["deleted"] == [first]


def test_a_writer_that_may_not_delete_still_backs_up_past_leftovers(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """A SAS without delete (so that a backup host cannot destroy backups) and the leftover of
    an interrupted run: every later run failed in the cleanup ("lack the delete permission",
    exit 1), so one crash stopped all backups. Now the leftover stays, with a warning."""
    first = run_backup(cli, seeded_sqlite, azure_store)["id"]
    _box(azurite, azure_store).upload_blob(f"emrsim/{GHOST}/database.sqlite.zst", b"partial")
    conn, sig = _sas_conn(azurite, azure_store, "racwlt")
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store, "--json",
               env={"EMROPS_AZURE_STORAGE_CONNECTION_STRING": conn})  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert f"leftovers of interrupted runs stay in {azure_store}: Azure refused to delete" in (
        done.stderr
    )
    _no_secret(done, sig)
    second = json.loads(done.stdout)["manifest"]["id"]
    assert [e["id"] for e in listed(cli, azure_store)] == [first, second]
    assert f"emrsim/{GHOST}/database.sqlite.zst" in _blobs(azurite, azure_store)


def test_a_file_where_a_backup_folder_should_be_is_not_found(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A plain file named like a backup id at the top of a local store: verify, pin and
    restore of that id ended in "unexpected NotADirectoryError"."""
    store = tmp_path / "backups"
    run_backup(cli, seeded_sqlite, store)
    (store / GHOST).write_bytes(b"x")
    for args in (["verify", GHOST], ["pin", GHOST],
                 ["restore", GHOST, "--target", str(tmp_path / "r.db"), "--yes"]):  # fmt: skip
        done = cli("backup", *args, "--store", str(store))
        assert done.exit_code == 1, (args, done.stderr)
        assert f"Error: backup {GHOST} not found in {store}" in done.stderr, done.stderr
    assert cli("backup", "verify", "--all", "--store", str(store)).exit_code == 0
    assert cli("backup", "run", "--db", seeded_sqlite, "--store", str(store)).exit_code == 0
    assert (store / GHOST).read_bytes() == b"x"


def test_link_loops_in_a_local_store_are_damage_not_a_crash(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A link to itself at verification.json, pin.json or a data file, or an id-named folder
    that is a loop: list, verify --all and rotate of the whole store, and verify ID, ended in
    "unexpected RuntimeError: Symlink loop from ..."."""
    store = tmp_path / "backups"
    first = run_backup(cli, seeded_sqlite, store)["id"]
    second = run_backup(cli, seeded_sqlite, store)["id"]
    for name in ("verification.json", "pin.json"):
        (store / first / name).symlink_to(name)
    (store / second / "database.sqlite.zst").unlink()
    (store / second / "database.sqlite.zst").symlink_to("database.sqlite.zst")
    (store / GHOST).symlink_to(GHOST)
    entries = {e["id"]: e for e in listed(cli, store)}
    assert entries[first]["verified"] == "invalid" and entries[first]["pinned"] is True
    done = cli("backup", "verify", "--all", "--store", str(store))
    assert done.exit_code == 3 and f"{second}: checksum database.sqlite.zst: refusing" in (
        done.stderr
    )
    done = cli("backup", "verify", GHOST, "--store", str(store))
    assert done.exit_code == 1 and "loop" in done.stderr and "unexpected" not in done.stderr
    assert cli("backup", "run", "--db", seeded_sqlite, "--store", str(store)).exit_code == 0
    done = cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json")
    assert json_of(done)["deleted"] == []  # the failed one is newer than the verified one


def test_a_manifest_that_is_a_link_to_nothing_is_broken_never_removed(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A backup whose manifest.json became a link to nothing (its data files intact) was left
    out of ``backup list`` and deleted whole, as a crashed run's leftovers, by the next run."""
    store = tmp_path / "backups"
    damaged = run_backup(cli, seeded_sqlite, store)["id"]
    (store / damaged / "manifest.json").unlink()
    (store / damaged / "manifest.json").symlink_to("gone.json")
    [entry] = listed(cli, store)
    assert entry["id"] == damaged and entry["verified"] == "broken"
    assert "is a link to nothing ('gone.json')" in entry["reason"]
    assert cli("backup", "run", "--db", seeded_sqlite, "--store", str(store)).exit_code == 0
    assert (store / damaged / "database.sqlite.zst").is_file()
    done = cli("backup", "verify", damaged, "--store", str(store))
    assert done.exit_code == 3 and "is a link to nothing" in done.stderr


def test_a_folder_named_like_a_staging_file_does_not_stop_runs(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """A folder ``<id>/.staging-x`` in a local store: every later run failed in the cleanup
    of interrupted runs with "unexpected IsADirectoryError"."""
    store = tmp_path / "backups"
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    (store / backup_id / ".staging-x" / "sub").mkdir(parents=True)
    (store / backup_id / ".staging-manifest.json.1").write_bytes(b"half")
    done = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store))
    assert done.exit_code == 0, done.stderr
    assert not (store / backup_id / ".staging-manifest.json.1").exists()  # a run's: removed
    assert (store / backup_id / ".staging-x" / "sub").is_dir()  # no run's: left alone
    assert cli("backup", "verify", "--all", "--store", str(store)).exit_code == 0


def test_unpin_of_a_pin_record_that_is_a_folder_names_it(
    cli, seeded_sqlite: str, tmp_path: Path
) -> None:
    """``backup unpin`` where pin.json is a folder ended in "unexpected IsADirectoryError"."""
    store = tmp_path / "backups"
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    (store / backup_id / "pin.json" / "x").mkdir(parents=True)
    done = cli("backup", "unpin", backup_id, "--store", str(store))
    assert done.exit_code == 3, done.stderr
    assert f"Error: {backup_id}/pin.json in backup store {store} is a folder, not a file" in (
        done.stderr
    )
    assert (store / backup_id / "pin.json" / "x").is_dir()
    assert listed(cli, store)[0]["pinned"] is True  # still pins, as an invalid record does


@pytest.mark.slow
def test_the_lease_of_a_killed_holder_runs_out_and_the_lock_is_taken_over(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """Already handled (a regression test, ~65 s): with no one renewing it, the lease of a
    SIGKILLed run ends within 60 s and the next run takes the lock over, with a warning."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "EMROPS_AZURE_STORAGE_CONNECTION_STRING": azurite}
    settings = {"azure.storage_connection_string": azurite}
    script = (
        "import time\nfrom emrops.backup.stores import open_store\n"
        f"store = open_store({azure_store!r}, {settings!r})\n"
        "with store.lock('backup run'):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    killed_at = time.monotonic()
    busy = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store)
    assert busy.exit_code == 75 and "is no longer running on this host" in busy.stderr
    while time.monotonic() - killed_at < 62:
        done = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store)
        if done.exit_code == 0:
            break
        assert done.exit_code == 75, done.stderr
        time.sleep(2)
    assert done.exit_code == 0, done.stderr
    assert f"taking over a stale lock on {azure_store}: backup run by pid {holder.pid}" in (
        done.stderr
    )
    assert len(listed(cli, azure_store)) == 1


def test_an_archived_verification_record_is_replaced_by_the_next_verify(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    """verify read the previous record (for its history) before writing the new one: an
    archived verification.json made a good backup "not checked" (exit 1) for good."""
    backup_id = run_backup(cli, seeded_sqlite, azure_store)["id"]
    assert cli("backup", "verify", backup_id, "--store", azure_store).exit_code == 0
    record = _box(azurite, azure_store).get_blob_client(f"emrsim/{backup_id}/verification.json")
    record.set_standard_blob_tier("Archive")
    assert listed(cli, azure_store)[0]["verified"] == "invalid"
    done = cli("backup", "verify", backup_id, "--store", azure_store)
    assert done.exit_code == 0, done.stderr
    assert listed(cli, azure_store)[0]["verified"] == "ok"
