"""Encryption as reliable as plain: WAL restarts under an encrypted snapshot are retried,
damage with the right identity is a recorded failure (exit 3), a missing or wrong identity is
a configuration error (exit 1, nothing recorded), and ``verify --all`` goes on past each."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emrops.backup.manifest import Manifest
from emrops.backup.run import RunOptions, run_backup
from emrops.backup.stores.local import LocalStore
from emrops.backup.verify import verify_backups
from tests.backup.conftest import json_of, listed
from tests.backup.conftest import run_backup as cli_backup


@pytest.fixture
def keys(cli, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    pair = json_of(cli("backup", "keygen", "--json"))
    monkeypatch.setenv("EMROPS_BACKUP_RECIPIENT", pair["recipient"])
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", pair["identity"])
    return pair


def _data_file(store: Path, manifest: dict) -> Path:  # type: ignore[type-arg]
    return store / manifest["id"] / manifest["files"][0]["name"]


def _reseal(store: Path, backup_id: str) -> None:
    """What a writer to the store can do: make the manifest match damaged data again."""
    path = store / backup_id / "manifest.json"
    doc = json.loads(path.read_text())
    data = store / backup_id / doc["files"][0]["name"]
    blob = data.read_bytes()
    doc["files"][0]["size"] = len(blob)
    doc["files"][0]["sha256"] = hashlib.sha256(blob).hexdigest()
    manifest = Manifest.from_json(json.dumps(doc).encode(), "test", backup_id)
    path.write_bytes(manifest.seal_now().to_json())


def _header_end(blob: bytes) -> int:
    return blob.index(b"\n---") + 1


DAMAGE = {
    "header": lambda b: b[:20] + bytes([b[20] ^ 1]) + b[21:],  # in the recipient stanza
    "header-mac": lambda b: (
        b[: _header_end(b) + 6] + bytes([b[_header_end(b) + 6] ^ 1]) + b[_header_end(b) + 7 :]
    ),
    "body": lambda b: b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 1]) + b[len(b) // 2 + 1 :],
    "truncated": lambda b: b[: len(b) - 100],
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
@pytest.mark.parametrize("resealed", [False, True], ids=["as-damaged", "manifest-rewritten"])
def test_damaged_encrypted_backup_is_marked_failed(
    cli, seeded_sqlite: str, store: Path, keys: dict[str, str], kind: str, resealed: bool
) -> None:
    manifest = cli_backup(cli, seeded_sqlite, store, "--encrypt")
    data = _data_file(store, manifest)
    data.write_bytes(DAMAGE[kind](data.read_bytes()))
    if resealed:  # checksums match again: only decryption can find the damage
        _reseal(store, manifest["id"])
    result = cli("backup", "verify", "--latest", "--store", str(store))
    assert result.exit_code == 3, (result.stdout, result.stderr)
    assert "unexpected" not in result.stderr
    recorded = json.loads((store / manifest["id"] / "verification.json").read_text())
    assert recorded["ok"] is False
    failed = [c["name"] for c in recorded["checks"] if not c["ok"]]
    if resealed:
        assert failed == ["decrypt database.sqlite.zst.age"], recorded["checks"]
    else:
        assert "checksum database.sqlite.zst.age" in failed
    [entry] = listed(cli, store)
    assert entry["verified"] == "failed"
    assert failed[0] in entry["reason"]
    table = cli("backup", "list", "--store", str(store))
    assert "FAILED" in table.stdout


def test_missing_or_wrong_identity_is_a_configuration_error(
    cli, seeded_sqlite: str, store: Path, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = cli_backup(cli, seeded_sqlite, store, "--encrypt")
    monkeypatch.delenv("EMROPS_BACKUP_IDENTITY")
    missing = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert missing.exit_code == 1
    assert "EMROPS_BACKUP_IDENTITY is not set" in missing.stderr
    assert "Try: export EMROPS_BACKUP_IDENTITY" in missing.stderr
    other = json_of(cli("backup", "keygen", "--json"))["identity"]
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", other)
    wrong = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert wrong.exit_code == 1 and "does not match its recipient" in wrong.stderr
    assert not (store / manifest["id"] / "verification.json").exists()
    assert listed(cli, store)[0]["verified"] == "never"
    # without the identity, damage that the checksum shows is still damage
    data = _data_file(store, manifest)
    data.write_bytes(DAMAGE["body"](data.read_bytes()))
    monkeypatch.delenv("EMROPS_BACKUP_IDENTITY")
    damaged = cli("backup", "verify", manifest["id"], "--store", str(store))
    assert damaged.exit_code == 3 and "checksum database.sqlite.zst.age" in damaged.stderr


def test_verify_all_goes_on_and_exits_with_the_worst(
    cli, seeded_sqlite: str, store: Path, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = cli_backup(cli, seeded_sqlite, store)
    encrypted = cli_backup(cli, seeded_sqlite, store, "--encrypt")
    also_plain = cli_backup(cli, seeded_sqlite, store)
    monkeypatch.delenv("EMROPS_BACKUP_IDENTITY")
    # no identity: the encrypted one cannot be checked (exit 1), the others are checked
    result = cli("backup", "verify", "--all", "--store", str(store), "--json")
    assert result.exit_code == 1, result.stderr
    by_id = {r["backup_id"]: r for r in json.loads(result.stdout)}
    assert by_id[plain["id"]]["ok"] is True and by_id[also_plain["id"]]["ok"] is True
    assert by_id[encrypted["id"]]["ok"] is None
    assert "EMROPS_BACKUP_IDENTITY is not set" in by_id[encrypted["id"]]["reason"]
    assert "1 of 3 backups could not be checked" in result.stderr
    assert not (store / encrypted["id"] / "verification.json").exists()
    # plus one damaged: exit 3, every result still printed
    data = _data_file(store, plain)
    data.write_bytes(data.read_bytes()[:-10])
    worst = cli("backup", "verify", "--all", "--store", str(store))
    assert worst.exit_code == 3
    for backup_id in (plain["id"], encrypted["id"], also_plain["id"]):
        assert backup_id in worst.stderr
    assert "NOT CHECKED" in worst.stderr and "FAILED" in worst.stderr
    # identity back: the damaged one still fails, the others are ok
    monkeypatch.setenv("EMROPS_BACKUP_IDENTITY", keys["identity"])
    again = cli("backup", "verify", "--all", "--store", str(store), "--json")
    assert again.exit_code == 3
    assert [r["ok"] for r in json.loads(again.stdout)] == [False, True, True]


class RestartingWriter:
    """Forces WAL restarts: a writer with a tiny wal_autocheckpoint (every commit is
    checkpointed, so the next one restarts the WAL) and a ``wal_checkpoint(TRUNCATE)`` loop
    in a second thread."""

    def __init__(self, path: Path):
        self.path = path
        self.stop = threading.Event()
        self.writes = 0
        self.threads = [
            threading.Thread(target=self._write, daemon=True),
            threading.Thread(target=self._truncate, daemon=True),
        ]

    def _connect(self) -> sqlite3.Connection:
        # a short busy timeout: waiting for the snapshot's read lock would stop the writes
        conn = sqlite3.connect(self.path, timeout=0.01, isolation_level=None)
        conn.execute("PRAGMA wal_autocheckpoint=2")
        conn.execute("PRAGMA synchronous=OFF")  # many commits a second
        return conn

    def _write(self) -> None:
        conn = self._connect()
        conn.execute("CREATE TABLE IF NOT EXISTS churn (id INTEGER PRIMARY KEY, v BLOB)")
        try:
            while not self.stop.is_set():
                try:
                    conn.execute("INSERT INTO churn (v) VALUES (randomblob(3000))")
                    conn.execute("DELETE FROM churn WHERE id < (SELECT max(id) - 50 FROM churn)")
                    self.writes += 1
                except sqlite3.OperationalError:
                    pass  # busy: try again
        finally:
            conn.close()

    def _truncate(self) -> None:
        conn = self._connect()
        try:
            while not self.stop.wait(0.02):
                with contextlib.suppress(sqlite3.OperationalError):
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        finally:
            conn.close()

    def __enter__(self) -> RestartingWriter:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def busy_db(tmp_path: Path, seeded_sqlite: str) -> Iterator[Path]:
    path = Path(seeded_sqlite.removeprefix("sqlite:///"))
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    # a few MB, so that a read takes long enough for the writer to restart the WAL under it
    conn.execute("CREATE TABLE filler (v BLOB)")
    conn.executemany("INSERT INTO filler VALUES (randomblob(4000))", [()] * 1500)
    conn.commit()
    conn.close()
    yield path


class Counter(logging.Handler):
    """Counts the snapshot's "read again" notes (the emrops logger does not propagate)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.restarts = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.restarts += "restarted during the read" in record.getMessage()


def encrypted_runs_under_restarts(path: Path, store: Path, runs: int) -> tuple[int, int]:
    """``runs`` encrypted backups under a restarting writer; each must publish and verify.
    Returns (restarts seen, writes done)."""
    target = LocalStore(store)
    opts = RunOptions(db_url=f"sqlite:///{path}", encrypt=True, recipients=None)
    import os

    opts.recipients = os.environ["EMROPS_BACKUP_RECIPIENT"]
    logger = logging.getLogger("emrops.backup.snapshot")
    counter, level = Counter(), logger.level
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    try:
        with RestartingWriter(path) as writer:
            ids = [run_backup(target, opts).id for _ in range(runs)]
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)
    results = verify_backups(target, ids)
    assert [r.ok for r in results] == [True] * runs, [getattr(r, "reason", r) for r in results]
    return counter.restarts, writer.writes


def test_encrypted_backup_under_wal_restarts(
    busy_db: Path, store: Path, keys: dict[str, str]
) -> None:
    _, writes = encrypted_runs_under_restarts(busy_db, store, 3)
    assert writes > 0


@pytest.mark.slow
def test_encrypted_backup_under_wal_restarts_many_runs(
    busy_db: Path, store: Path, keys: dict[str, str]
) -> None:
    restarts, writes = encrypted_runs_under_restarts(busy_db, store, 25)
    assert writes > 0
    assert restarts > 0, "the writer never restarted the WAL under a read: the trial proves little"
