"""Property: for any sequence of runs, damage, pins and rotations on a real store, rotate never
deletes the newest intact verified backup and never counts a broken one as verified.

The store is a real LocalStore; backups are small (their data files are never read by
rotate), their manifests sealed and their verification records written by the same code as
``backup run`` and ``backup verify``. The oracle is the test's own model of what it did."""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from emrops.backup import catalog, retention
from emrops.backup.manifest import DataFile, Manifest, new_backup_id
from emrops.backup.run import pin_record
from emrops.backup.stores.local import LocalStore
from emrops.backup.verify import Checks, _record
from emrops.logs import iso_utc

START = datetime(2026, 1, 1, tzinfo=UTC)
# a manifest that cannot be read, one changed after sealing, a record of another backup,
# a failed verification: none of them may count as verified
DAMAGE = ("garbage", "changed-field", "foreign-record", "failed-record")


@dataclass
class Model:
    created: datetime
    verified: bool = False
    broken: bool = False  # manifest unreadable or changed
    pinned: bool = False

    @property
    def intact_verified(self) -> bool:
        return self.verified and not self.broken


def _publish(store: LocalStore, at: datetime, verified: bool) -> str:
    backup_id = new_backup_id(at)
    data = hashlib.sha256(backup_id.encode()).digest()
    store.write_bytes(f"{backup_id}/database.sqlite.zst", data)
    manifest = Manifest(
        id=backup_id,
        created_at=iso_utc(at),
        engine="sqlite",
        source="sqlite:////srv/app.db",
        schema_revision="0001",
        row_counts={"sessions": 1},
        files=[
            DataFile("database.sqlite.zst", "database", 32, hashlib.sha256(data).hexdigest(), 1)
        ],
        tool_version="test",
        host="test",
        source_id={"kind": "sqlite", "path": "/srv/app.db", "header": {}},
    ).seal_now()
    store.write_bytes(f"{backup_id}/manifest.json", manifest.to_json())
    if verified:
        checks = Checks()
        checks.add("checksum database.sqlite.zst", True)
        _record(store, backup_id, manifest.seal, checks, time.monotonic())
    return backup_id


def _damage(store: LocalStore, root: Path, backup_id: str, kind: str, model: Model) -> None:
    folder = root / backup_id
    if kind == "garbage":
        (folder / "manifest.json").write_text("{ not json")
        model.broken = True
    elif kind == "changed-field" and not model.broken:
        doc = json.loads((folder / "manifest.json").read_text())
        doc["row_counts"]["sessions"] += 1
        (folder / "manifest.json").write_text(json.dumps(doc))
        model.broken = True
    elif kind == "foreign-record" and not model.broken and (folder / "verification.json").exists():
        doc = json.loads((folder / "verification.json").read_text())
        doc["backup_id"] = "20200101T000000.000Z-abcdef"
        (folder / "verification.json").write_text(json.dumps(doc))
        model.verified = False
    elif kind == "failed-record" and not model.broken:
        checks = Checks()
        checks.add("integrity_check", False, "damaged")
        seal = json.loads((folder / "manifest.json").read_text())["seal"]
        _record(store, backup_id, seal, checks, time.monotonic())
        model.verified = False


steps = st.lists(
    st.one_of(
        st.tuples(st.just("run"), st.booleans(), st.integers(1, 60 * 24 * 40)),
        st.tuples(st.just("damage"), st.sampled_from(DAMAGE), st.integers(0, 50)),
        st.tuples(st.just("pin"), st.booleans(), st.integers(0, 50)),
        st.tuples(
            st.just("rotate"),
            st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 2), st.integers(0, 2)),
            st.integers(0, 0),
        ),
    ),
    min_size=1,
    max_size=14,
)


@settings(max_examples=60, deadline=None)
@given(steps)
def test_rotate_keeps_the_newest_intact_verified_backup(plan: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory(prefix="emrops-prop-") as tmp:
        root = Path(tmp) / "store"
        store = LocalStore(root)
        models: dict[str, Model] = {}
        clock = START
        for action, arg, n in plan + [("rotate", (1, 0, 0, 0), 0)]:
            ids = sorted(models)
            if action == "run":
                clock += timedelta(minutes=n)
                models[_publish(store, clock, arg)] = Model(clock, verified=arg)
            elif action == "damage" and ids:
                backup_id = ids[n % len(ids)]
                _damage(store, root, backup_id, arg, models[backup_id])
            elif action == "pin" and ids:
                backup_id = ids[n % len(ids)]
                if arg:
                    store.write_bytes(f"{backup_id}/pin.json", pin_record(backup_id, "test"))
                else:
                    store.delete(f"{backup_id}/pin.json")
                models[backup_id].pinned = arg
            elif action == "rotate":
                policy = retention.Policy(*arg)
                if policy.empty:
                    continue
                intact = [i for i, m in models.items() if m.intact_verified]
                newest = max(intact, key=lambda i: models[i].created) if intact else None
                result = catalog.rotate(store, policy)
                present = set(store.complete_ids())
                if newest is not None:
                    assert newest in present, (newest, result.decisions)
                for decision in result.decisions:
                    model = models[decision.id]
                    if not model.intact_verified:
                        # counted as verified would show as one of these reasons
                        counted = {"newest verified", "last"} & set(decision.reasons)
                        assert not counted, (decision, model)
                        assert not any(
                            r.startswith(("daily ", "weekly ", "monthly "))
                            for r in decision.reasons
                        ), (decision, model)
                    if model.broken:
                        assert decision.keep, decision  # never deleted silently
                    if model.pinned:
                        assert decision.keep, decision
                for backup_id in [i for i in models if i not in present]:
                    del models[backup_id]
