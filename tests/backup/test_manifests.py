"""Manifests as untrusted input: forged, damaged and hostile documents in a store.

Each field changed is caught by the seal (and, encrypted, by the digest inside the age
stream even when the forger re-seals); traversal names, a wrong id, garbage JSON and bad
timestamps give a broken entry that never stops list, rotate or verify of the others; copy
and restore never touch a path outside their store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from emrops.backup.manifest import Manifest
from emrops.backup.stores import OutsideStore
from emrops.backup.stores.local import LocalStore
from tests.backup.conftest import json_of, listed, run_backup


def _doc(store: Path, backup_id: str) -> dict[str, Any]:
    return json.loads((store / backup_id / "manifest.json").read_text())


def _write(store: Path, backup_id: str, doc: Any) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc, indent=2)
    (store / backup_id / "manifest.json").write_text(text)


def _reseal(doc: dict[str, Any], folder: str) -> dict[str, Any]:
    """What a forger with write access does: recompute the plain checksum."""
    manifest = Manifest.from_json(json.dumps(doc).encode(), "test", folder)
    return json.loads(manifest.seal_now().to_json())


# every field a forger might change, with a schema-valid new value
FIELD_CHANGES: dict[str, Any] = {
    "created_at": lambda d: d.update(created_at="2020-01-01T00:00:00.000Z"),
    "engine": lambda d: d.update(engine="postgresql"),
    "source": lambda d: d.update(source="sqlite:////elsewhere.db"),
    "source_id": lambda d: d["source_id"].update(path="/elsewhere.db"),
    "schema_revision": lambda d: d.update(schema_revision="9999_forged"),
    "row_counts": lambda d: d["row_counts"].update(messages=1),
    "tool_version": lambda d: d.update(tool_version="0.0.0"),
    "host": lambda d: d.update(host="forged"),
    "label": lambda d: d.update(label="forged"),
    "duration_s": lambda d: d.update(duration_s=123.0),
    "engine_info": lambda d: d["engine_info"].update(snapshot="forged"),
    "files.raw_size": lambda d: d["files"][0].update(raw_size=1),
    "files.compression_level": lambda d: d["files"][0].update(compression_level=19),
    "extra field": lambda d: d.update(seal=d["seal"]),  # placeholder, replaced below
}
del FIELD_CHANGES["extra field"]


@pytest.mark.parametrize("field", sorted(FIELD_CHANGES))
def test_each_changed_field_fails_the_seal(cli, seeded_sqlite: str, store: Path, field) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    json_of(cli("backup", "verify", backup_id, "--store", str(store), "--json"))
    assert listed(cli, store)[0]["verified"] == "ok"
    doc = _doc(store, backup_id)
    FIELD_CHANGES[field](doc)
    _write(store, backup_id, doc)
    # the earlier "ok" no longer counts, and rotate does not count it as verified
    [entry] = listed(cli, store)
    assert entry["verified"] != "ok"
    result = cli("backup", "verify", backup_id, "--store", str(store), "--json")
    assert result.exit_code == 3, result.stderr
    [record] = json.loads(result.stdout)
    seal = next(c for c in record["checks"] if c["name"] == "manifest seal")
    assert seal["ok"] is False and "changed after it was sealed" in seal["detail"]
    [entry] = listed(cli, store)
    assert entry["verified"] == "broken" and "does not match its seal" in entry["broken"]


BOUND = {
    "row_counts": lambda d: d["row_counts"].update(messages=1),
    "created_at": lambda d: d.update(created_at="2020-01-01T00:00:00.000Z"),
    "source": lambda d: d.update(source="sqlite:////elsewhere.db"),
    "schema_revision": lambda d: d.update(schema_revision="9999_forged"),
    "label": lambda d: d.update(label="forged"),
}


@pytest.mark.parametrize("field", sorted(BOUND))
def test_resealed_encrypted_manifest_is_caught_by_the_identity(
    cli, seeded_sqlite: str, store: Path, monkeypatch: pytest.MonkeyPatch, field: str
) -> None:
    pair = json_of(cli("backup", "keygen", "--json"))
    monkeypatch.setenv("EMROPS_BACKUP_RECIPIENT", pair["recipient"])
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", pair["identity"])
    backup_id = run_backup(cli, seeded_sqlite, store, "--encrypt")["id"]
    doc = _doc(store, backup_id)
    BOUND[field](doc)
    _write(store, backup_id, _reseal(doc, backup_id))  # the plain seal matches again
    result = cli("backup", "verify", backup_id, "--store", str(store), "--json")
    assert result.exit_code == 3
    [record] = json.loads(result.stdout)
    failed = [c["name"] for c in record["checks"] if not c["ok"]]
    assert "identity seal database.sqlite.zst.age" in failed
    assert "manifest seal" not in failed


def test_unsealed_old_manifest_verifies_with_a_warning(
    cli, seeded_sqlite: str, store: Path
) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    doc = _doc(store, backup_id)
    del doc["seal"], doc["source_id"]  # as written before seals and source ids
    _write(store, backup_id, doc)
    [record] = json_of(cli("backup", "verify", backup_id, "--store", str(store), "--json"))
    assert record["ok"] is True
    seal = next(c for c in record["checks"] if c["name"] == "manifest seal")
    assert seal["detail"].startswith("warning: unsealed")
    [entry] = listed(cli, store)
    assert entry["verified"] == "ok" and entry["sealed"] is False
    assert "(unsealed)" in cli("backup", "list", "--store", str(store)).stderr


def _name(doc: dict[str, Any], value: str) -> None:
    doc["files"][0]["name"] = value


BROKEN: dict[str, tuple[Any, str]] = {
    "traversal name": (lambda d: _name(d, "../../escaped.zst"), "is not a plain file name"),
    "absolute name": (lambda d: _name(d, "/etc/passwd"), "is not a plain file name"),
    "separator": (lambda d: _name(d, "a/b.zst"), "is not a plain file name"),
    "backslash": (lambda d: _name(d, "..\\b.zst"), "is not a plain file name"),
    "NUL": (lambda d: _name(d, "a\x00.zst"), "is not a plain file name"),
    "dot dot": (lambda d: _name(d, ".."), "is not a plain file name"),
    "reserved": (lambda d: _name(d, "manifest.json"), "is not a plain file name"),
    "wrong id": (
        lambda d: d.update(id="20200101T000000.000Z-abcdef"),
        "is not the folder it is in",
    ),
    "bad created_at": (lambda d: d.update(created_at="2026-13-45T99:00:00Z"), "created_at"),
    "naive created_at": (lambda d: d.update(created_at="2026-01-01T00:00:00"), "created_at"),
    "not a time": (lambda d: d.update(created_at="yesterday"), "created_at"),
    "unknown field": (lambda d: d.update(extra=1), "Additional properties"),
    "negative rows": (lambda d: d["row_counts"].update(messages=-1), "row_counts/messages"),
    "bad sha": (lambda d: d["files"][0].update(sha256="x"), "files/0/sha256"),
    "garbage JSON": ("{not json", "invalid"),
    "not an object": ("[1, 2]", "is not of type 'object'"),
    "empty": ("", "invalid"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_invalid_manifest_is_a_broken_entry_that_stops_nothing(
    cli, seeded_sqlite: str, store: Path, tmp_path: Path, case: str
) -> None:
    forged, good, newest = (run_backup(cli, seeded_sqlite, store)["id"] for _ in range(3))
    change, reason = BROKEN[case]
    if isinstance(change, str):
        _write(store, forged, change)
    else:
        doc = _doc(store, forged)
        change(doc)
        _write(store, forged, _reseal_raw(doc))
    entries = {e["id"]: e for e in listed(cli, store)}
    assert set(entries) == {forged, good, newest}
    assert entries[forged]["verified"] == "broken" and reason in entries[forged]["broken"]
    assert entries[good]["verified"] == "never"
    table = cli("backup", "list", "--store", str(store))
    assert table.exit_code == 0 and "BROKEN" in table.stdout
    # verify --all: the broken one fails (recorded), the others are verified
    result = cli("backup", "verify", "--all", "--store", str(store), "--json")
    assert result.exit_code == 3
    by_id = {r["backup_id"]: r for r in json.loads(result.stdout)}
    assert by_id[forged]["ok"] is False and by_id[forged]["checks"][0]["name"] == "manifest"
    assert by_id[good]["ok"] is True and by_id[newest]["ok"] is True
    # rotate: the broken one is kept (never deleted silently) and never counts as verified
    rotated = json_of(cli("backup", "rotate", "--keep-last", "1", "--store", str(store), "--json"))
    actions = {d["id"]: (d["action"], d["reasons"]) for d in rotated["decisions"]}
    assert actions[forged][0] == "keep" and actions[forged][1][0].startswith("broken, kept")
    assert actions[newest] == ("keep", ["newest verified", "last"])
    assert actions[good][0] == "delete"
    assert (store / forged).is_dir() and not (store / good).exists()
    # --latest and copy skip/refuse it; nothing is ever written outside the stores
    other = tmp_path / "copy"
    copied = cli("backup", "copy", forged, "--to", str(other), "--store", str(store))
    assert copied.exit_code == 3 and "invalid" in copied.stderr
    assert not (other / forged / "manifest.json").exists()
    assert not (tmp_path / "escaped.zst").exists() and not (store.parent / "escaped.zst").exists()


def _reseal_raw(doc: dict[str, Any]) -> dict[str, Any]:
    """Re-seal whatever the document holds (so only the validation can refuse it)."""
    from emrops.backup.manifest import seal_of

    doc.pop("seal", None)
    doc["seal"] = seal_of(doc)
    return doc


def test_forged_verification_and_pin_records(cli, seeded_sqlite: str, store: Path) -> None:
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    json_of(cli("backup", "verify", backup_id, "--store", str(store), "--json"))
    record = json.loads((store / backup_id / "verification.json").read_text())
    (store / backup_id / "verification.json").write_text(
        json.dumps({**record, "backup_id": "20200101T000000.000Z-abcdef"})
    )
    [entry] = listed(cli, store)
    assert entry["verified"] == "invalid" and "is not the folder it is in" in entry["reason"]
    (store / backup_id / "verification.json").write_text("garbage")
    assert listed(cli, store)[0]["verified"] == "invalid"
    # a pin record that is not valid still pins (keeping is the safe side)
    (store / backup_id / "pin.json").write_text('{"pinned_at": "never"}')
    [entry] = listed(cli, store)
    assert entry["pinned"] is True and "pin record is invalid" in entry["reason"]


def test_local_store_refuses_names_outside_it(tmp_path: Path) -> None:
    root = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    store = LocalStore(root)
    store.write_bytes("20261204T000000.000Z-aaaaaa/x", b"1")
    for name in ("../x", "a/../../x", "/etc/passwd", "a/b/c", "a\\..\\x", "a/\x00", ".."):
        with pytest.raises(OutsideStore):
            store.write_bytes(name, b"nope")
        with pytest.raises(OutsideStore):
            store.read_bytes(name)
    # a backup folder that is a link to elsewhere is refused too
    (root / "20261204T000000.000Z-bbbbbb").symlink_to(outside)
    with pytest.raises(OutsideStore, match="outside backup store"):
        store.write_bytes("20261204T000000.000Z-bbbbbb/manifest.json", b"{}")
    assert list(outside.iterdir()) == []


def test_restore_reads_only_inside_the_store(cli, seeded_sqlite: str, store: Path, tmp_path):
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    decoy = tmp_path / "decoy.zst"
    decoy.write_bytes((store / backup_id / "database.sqlite.zst").read_bytes())
    doc = _doc(store, backup_id)
    doc["files"][0]["name"] = "../../decoy.zst"
    doc["files"][0]["sha256"] = hashlib.sha256(decoy.read_bytes()).hexdigest()
    _write(store, backup_id, _reseal_raw(doc))
    target = tmp_path / "restored.db"
    result = cli(
        "backup", "restore", backup_id, "--target", str(target), "--yes", "--store", str(store)
    )
    assert result.exit_code == 3 and "is not a plain file name" in result.stderr
    assert not target.exists()


def test_forged_manifest_on_azure(
    cli, seeded_sqlite: str, azure_store: str, azurite: str, tmp_path: Path
) -> None:
    """Blob names: a forged manifest naming "../x" never makes verify read, or copy write, a
    blob outside the store's prefix; the other backups are still listed and verified."""
    from azure.storage.blob import BlobServiceClient

    from emrops.backup.stores import open_store

    forged, good = (run_backup(cli, seeded_sqlite, azure_store)["id"] for _ in range(2))
    name = azure_store.removeprefix("azure://").split("/")[0]
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(name)
    data = client.download_blob(f"emrsim/{forged}/database.sqlite.zst").readall()
    client.upload_blob("outside.zst", data)  # a blob beside the prefix, as bait
    doc = json.loads(client.download_blob(f"emrsim/{forged}/manifest.json").readall())
    doc["files"][0]["name"] = "../../outside.zst"
    client.upload_blob(
        f"emrsim/{forged}/manifest.json", json.dumps(_reseal_raw(doc)), overwrite=True
    )

    entries = {e["id"]: e for e in listed(cli, azure_store)}
    assert entries[forged]["verified"] == "broken"
    assert "is not a plain file name" in entries[forged]["broken"]
    result = cli("backup", "verify", "--all", "--store", azure_store, "--json")
    assert result.exit_code == 3
    assert [r["ok"] for r in json.loads(result.stdout)] == [False, True]
    to = tmp_path / "copy"
    copied = cli("backup", "copy", forged, "--to", str(to), "--store", azure_store)
    assert copied.exit_code == 3 and not (to / forged).exists()
    back = cli("backup", "copy", good, "--to", f"{azure_store}-b", "--store", azure_store)
    assert back.exit_code == 0, back.stderr
    # the store itself refuses names that leave its prefix
    from emrops.config import load_settings

    azure = open_store(azure_store, load_settings())
    for bad in ("../outside.zst", f"{good}/../../outside.zst", "a/b/c", ".."):
        with pytest.raises(OutsideStore):
            azure.read_bytes(bad)
        with pytest.raises(OutsideStore):
            azure.write_bytes(bad, b"x")
    names = sorted(b.name for b in client.list_blobs())
    assert [n for n in names if not n.startswith(("emrsim/", "emrsim-b/"))] == ["outside.zst"]
    assert client.download_blob("outside.zst").readall() == data


def test_restore_refuses_a_changed_manifest(cli, seeded_sqlite: str, store: Path, tmp_path):
    backup_id = run_backup(cli, seeded_sqlite, store)["id"]
    doc = _doc(store, backup_id)
    doc["schema_revision"] = "0001_initial_forged"
    _write(store, backup_id, doc)
    target = tmp_path / "restored.db"
    result = cli(
        "backup", "restore", backup_id, "--target", str(target), "--yes", "--store", str(store)
    )
    assert result.exit_code == 3 and "does not match its seal" in result.stderr
    assert not target.exists()


def test_hostile_folder_names_do_not_stop_list(cli, seeded_sqlite: str, store: Path) -> None:
    good = run_backup(cli, seeded_sqlite, store)["id"]
    manifest = (store / good / "manifest.json").read_bytes()
    for name in ("a\\b", "not-an-id", "x\ny"):
        (store / name).mkdir()
        (store / name / "manifest.json").write_bytes(manifest)
    entries = {e["id"]: e for e in listed(cli, store)}
    assert entries[good]["verified"] == "never"
    assert entries["not-an-id"]["verified"] == "broken"
    assert "invalid backup id" in entries["not-an-id"]["broken"]
    assert "a\\b" not in entries  # a name that is not plain is never used at all
    result = cli("backup", "verify", "--all", "--store", str(store), "--json")
    assert result.exit_code == 3
    assert {r["backup_id"]: r["ok"] for r in json.loads(result.stdout)}[good] is True
