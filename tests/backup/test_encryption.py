"""age encryption: pyrage writes it, the Debian `age` CLI reads it; identity only from env."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.backup.conftest import have, json_of, listed, run_backup


@pytest.fixture
def keys(cli) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return json_of(cli("backup", "keygen", "--json"))


def test_keygen_prints_an_identity_file(cli) -> None:
    result = cli("backup", "keygen")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("# public key: age1") and lines[1].startswith("AGE-SECRET-KEY-1")


def test_keygen_out_writes_a_0600_identity_file_and_never_overwrites(cli, tmp_path: Path) -> None:
    import stat

    key = tmp_path / "keys" / "backup.key"
    result = cli("backup", "keygen", "--out", str(key))
    assert result.exit_code == 0, result.stderr
    recipient = result.stdout.strip()
    assert recipient.startswith("age1") and "AGE-SECRET-KEY" not in result.stdout + result.stderr
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    lines = key.read_text().splitlines()
    assert lines[1] == f"# public key: {recipient}" and lines[2].startswith("AGE-SECRET-KEY-1")
    # the age CLI reads it as an identity file
    probe = subprocess.run(
        [have("age"), "-r", recipient], input=b"x", capture_output=True, check=True
    )
    back = subprocess.run(
        [have("age"), "-d", "-i", str(key)], input=probe.stdout, capture_output=True, check=True
    )
    assert back.stdout == b"x"
    before = key.read_bytes()
    again = cli("backup", "keygen", "--out", str(key))
    assert again.exit_code == 2
    assert again.stderr.startswith(f"Error: {key} exists: refusing to overwrite an identity file")
    assert key.read_bytes() == before
    assert [p.name for p in key.parent.iterdir()] == ["backup.key"]  # no temporary left
    as_json = json_of(cli("backup", "keygen", "--out", str(tmp_path / "k2"), "--json"))
    assert as_json["recipient"].startswith("age1") and "identity" not in as_json


def test_encrypted_backup_decrypts_with_the_age_cli(
    cli, seeded_sqlite: str, store: Path, tmp_path: Path, keys: dict[str, str], monkeypatch
) -> None:
    monkeypatch.setenv("EMROPS_BACKUP_RECIPIENT", keys["recipient"])
    manifest = run_backup(cli, seeded_sqlite, store, "--encrypt")
    [data] = manifest["files"]
    assert data["name"] == "database.sqlite.zst.age" and data["encryption"] == "age"
    assert data["recipients"] == [keys["recipient"]]
    assert listed(cli, store)[0]["encrypted"] is True
    identity = tmp_path / "identity.txt"
    identity.write_text(keys["identity"] + "\n")
    stored = store / manifest["id"] / data["name"]
    assert b"age-encryption.org/v1" in stored.read_bytes()[:40]
    plain = tmp_path / "plain.db.zst"
    subprocess.run(
        [have("age"), "-d", "-i", str(identity), "-o", str(plain), str(stored)], check=True
    )
    subprocess.run(
        [have("zstd"), "-q", "-d", str(plain), "-o", str(tmp_path / "plain.db")], check=True
    )
    conn = sqlite3.connect(tmp_path / "plain.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 200
    conn.close()

    # verify: without the identity or with a wrong one -> exit 1 (configuration, nothing
    # recorded); right one -> ok
    missing = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert missing.exit_code == 1
    assert "Try: export EMROPS_BACKUP_IDENTITY" in missing.stderr
    assert (
        f"Error: backup {manifest['id']} is encrypted and EMROPS_BACKUP_IDENTITY is not set"
        in missing.stderr
    )
    other = json_of(cli("backup", "keygen", "--json"))["identity"]
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", other)
    wrong = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert wrong.exit_code == 1
    assert "EMROPS_BACKUP_IDENTITY does not match its recipient age1" in wrong.stderr
    assert other not in wrong.stderr + wrong.stdout
    assert not (
        store / manifest["id"] / "verification.json"
    ).exists()  # a key problem is not damage
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", f"# created by test\n{keys['identity']}\n")
    [ok] = json_of(cli("backup", "verify", manifest["id"], "--store", str(store), "--json"))
    assert ok["ok"] is True
    restored = tmp_path / "restored.db"
    json_of(
        cli(
            "backup",
            "restore",
            manifest["id"],
            "--target",
            str(restored),
            "--yes",
            "--json",
            "--store",
            str(store),
        )
    )
    assert sqlite3.connect(restored).execute("SELECT count(*) FROM messages").fetchone()[0] == 200


def test_encrypt_needs_a_recipient_and_identity_is_env_only(
    cli, seeded_sqlite: str, store: Path, tmp_path: Path
) -> None:
    result = cli("backup", "run", "--db", seeded_sqlite, "--store", str(store), "--encrypt")
    assert result.exit_code == 2 and "--encrypt needs a recipient" in result.stderr
    bad = cli(
        "backup",
        "run",
        "--db",
        seeded_sqlite,
        "--store",
        str(store),
        "--encrypt",
        env={"EMROPS_BACKUP_RECIPIENT": "age1nope"},
    )
    assert bad.exit_code == 2 and "invalid age recipient 'age1nope'" in bad.stderr
    assert listed(cli, store) == []
    (tmp_path / "emrops.toml").write_text('[backup]\nidentity = "AGE-SECRET-KEY-1X"\n')
    in_file = cli("backup", "list", "--store", str(store))
    assert (
        in_file.exit_code == 2
        and "unknown setting in" in in_file.stderr
        and "backup.identity" in in_file.stderr
    )


def test_recipient_from_config_file(
    cli, seeded_sqlite: str, tmp_path: Path, keys: dict[str, str]
) -> None:
    (tmp_path / "emrops.toml").write_text(
        f'[backup]\nrecipient = "{keys["recipient"]}"\nstore = "b"\n'
    )
    manifest = json.loads(
        cli("backup", "run", "--db", seeded_sqlite, "--encrypt", "--json").stdout
    )["manifest"]
    assert manifest["files"][0]["recipients"] == [keys["recipient"]]
