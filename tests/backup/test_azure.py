"""Azure Blob Storage against Azurite: run, list, verify, copy, lease lock, service down."""

from __future__ import annotations

import json
import os
import socket

from azure.storage.blob import BlobServiceClient

from emrops.backup.stores import open_store
from tests.backup.conftest import json_of, listed, run_backup, start_azurite, stop


def container(azurite: str, url: str):  # type: ignore[no-untyped-def]
    name = url.removeprefix("azure://").split("/")[0]
    return BlobServiceClient.from_connection_string(azurite).get_container_client(name)


def test_run_list_verify_restore_on_azure(
    cli, seeded_sqlite: str, azure_store: str, azurite: str, tmp_path
) -> None:
    manifest = run_backup(cli, seeded_sqlite, azure_store, "--label", "cloud")
    blobs = sorted(b.name for b in container(azurite, azure_store).list_blobs())
    assert f"emrsim/{manifest['id']}/manifest.json" in blobs
    assert f"emrsim/{manifest['id']}/database.sqlite.zst" in blobs
    entries = listed(cli, azure_store)
    assert [(e["id"], e["label"]) for e in entries] == [(manifest["id"], "cloud")]
    [result] = json_of(cli("backup", "verify", "--latest", "--store", azure_store, "--json"))
    assert result["ok"] is True
    assert listed(cli, azure_store)[0]["verified"] == "ok"
    target = tmp_path / "from-azure.db"
    json_of(
        cli(
            "backup",
            "restore",
            manifest["id"],
            "--target",
            str(target),
            "--yes",
            "--json",
            "--store",
            azure_store,
        )
    )
    assert target.stat().st_size > 0
    secret = (
        os.environ["EMROPS_AZURE_STORAGE_CONNECTION_STRING"].split("AccountKey=")[1].split(";")[0]
    )
    human = cli("backup", "list", "--store", azure_store)
    assert secret not in human.stdout + human.stderr


def test_flipped_byte_in_a_blob_fails_verify(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
) -> None:
    manifest = run_backup(cli, seeded_sqlite, azure_store)
    blob = container(azurite, azure_store).get_blob_client(
        f"emrsim/{manifest['id']}/database.sqlite.zst"
    )
    data = bytearray(blob.download_blob().readall())
    data[10] ^= 0xFF
    blob.upload_blob(bytes(data), overwrite=True)
    result = cli("backup", "verify", manifest["id"], "--store", azure_store)
    assert result.exit_code == 3 and "checksum database.sqlite.zst" in result.stderr


def test_copy_local_to_azure_and_back(
    cli, seeded_sqlite: str, store, azure_store: str, tmp_path
) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store, "--pin")["id"]
    result = json_of(
        cli("backup", "copy", backup_id, "--to", azure_store, "--store", str(store), "--json")
    )
    assert result["verification"]["ok"] is True and result["bytes_copied"] > 0
    [entry] = listed(cli, azure_store)
    assert entry["id"] == backup_id and entry["pinned"] is True and entry["verified"] == "ok"
    again = cli("backup", "copy", backup_id, "--to", azure_store, "--store", str(store))
    assert again.exit_code == 1 and "is already in" in again.stderr
    back = tmp_path / "second"
    json_of(cli("backup", "copy", backup_id, "--to", str(back), "--store", azure_store, "--json"))
    assert (back / backup_id / "manifest.json").is_file()


def test_lease_lock_busy_and_stale(
    cli, seeded_sqlite: str, azure_store: str, azurite: str, monkeypatch
) -> None:
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", azurite)
    store = open_store(azure_store, {"azure.storage_connection_string": azurite})
    with store.lock("test holder"):
        result = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store)
        assert result.exit_code == 75
        assert (
            f"is locked: test holder by pid {os.getpid()} on {socket.gethostname()}"
            in result.stderr
        )
    # a holder that died: its lease expired but its name is still on the lock blob
    blob = container(azurite, azure_store).get_blob_client("emrsim/.lock")
    blob.set_blob_metadata({"host": "gone", "pid": "4242", "operation": "backup run", "since": "x"})
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", azure_store)
    assert result.exit_code == 0, result.stderr
    assert "taking over a stale lock" in result.stderr and "pid 4242 on gone" in result.stderr
    assert blob.get_blob_properties().metadata == {}


def test_azurite_stopped(cli, seeded_sqlite: str, tmp_path, monkeypatch) -> None:
    from tests.backup.conftest import conn_string

    proc, port = start_azurite(tmp_path / "short-lived")
    stop(proc)
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_CONNECTION_STRING", conn_string(port))
    monkeypatch.setenv("EMROPS_AZURE_STORAGE_RETRIES", "0")  # fail at once: keeps the test short
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", "azure://down/emrsim")
    assert result.exit_code == 1
    assert "Error: cannot reach Azure Blob Storage for azure://down/emrsim" in result.stderr
    assert "Try: check the network" in result.stderr and "AccountKey=Eby8" not in result.stderr
    listing = cli("backup", "list", "--store", "azure://down/emrsim", "--json")
    assert listing.exit_code == 1 and listing.stdout == ""


def test_missing_credentials(cli) -> None:
    result = cli("backup", "list", "--store", "azure://c/p")
    assert result.exit_code == 2 and "no Azure credentials for azure://c/p" in result.stderr
    assert json.dumps  # keep import used


def _tags(azurite: str, url: str, backup_id: str) -> dict[str, str]:
    """The emrops-pinned tag of every blob of a backup, read straight from Azurite."""
    box = container(azurite, url)
    prefix = f"emrsim/{backup_id}/"
    return {
        b.name.removeprefix(prefix): box.get_blob_client(b.name)
        .get_blob_tags()
        .get("emrops-pinned", "")
        for b in box.list_blobs(name_starts_with=prefix)
    }


def test_pin_tags_follow_pin_and_unpin(cli, seeded_sqlite: str, azure_store: str, azurite: str):
    """The storage lifecycle rule deletes only blobs tagged emrops-pinned=false."""
    manifest = run_backup(cli, seeded_sqlite, azure_store)
    backup_id = manifest["id"]
    tags = _tags(azurite, azure_store, backup_id)
    assert "database.sqlite.zst" in tags and set(tags.values()) == {"false"}

    assert cli("backup", "pin", backup_id, "--store", azure_store).exit_code == 0
    tags = _tags(azurite, azure_store, backup_id)
    assert "pin.json" in tags and set(tags.values()) == {"true"}
    # a blob written into a pinned backup is born pinned
    [result] = json_of(cli("backup", "verify", backup_id, "--store", azure_store, "--json"))
    assert result["ok"] is True
    tags = _tags(azurite, azure_store, backup_id)
    assert len(tags) > 3 and set(tags.values()) == {"true"}

    assert cli("backup", "unpin", backup_id, "--store", azure_store).exit_code == 0
    tags = _tags(azurite, azure_store, backup_id)
    assert "pin.json" not in tags and set(tags.values()) == {"false"}
    from emrops.config import load_settings

    store = open_store(azure_store, load_settings())
    assert store.pin_tags(backup_id) == tags  # type: ignore[attr-defined]


def test_backup_run_with_pin_tags_everything_pinned(
    cli, seeded_sqlite: str, azure_store: str, azurite: str
):
    manifest = run_backup(cli, seeded_sqlite, azure_store, "--pin")
    tags = _tags(azurite, azure_store, manifest["id"])
    assert "pin.json" in tags and set(tags.values()) == {"true"}, tags
