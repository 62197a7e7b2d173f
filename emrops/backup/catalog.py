"""``backup list``, ``pin``/``unpin`` and ``rotate`` over the published backups of a store."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from emrops.backup import retention
from emrops.backup.lock import Warn
from emrops.backup.manifest import PIN, VERIFICATION, Manifest, Verification
from emrops.backup.run import pin_record
from emrops.backup.stores import NotFound, Store
from emrops.backup.verify import load_manifest
from emrops.errors import UsageError


@dataclass
class Entry:
    id: str
    created_at: str
    engine: str
    size: int
    label: str
    pinned: bool
    verified: str  # "ok", "failed" or "never"
    verified_at: str | None
    encrypted: bool
    schema_revision: str | None
    source: str
    rows: int


def entry(store: Store, manifest: Manifest) -> Entry:
    verification = None
    with contextlib.suppress(NotFound):
        verification = Verification.from_json(store.read_bytes(f"{manifest.id}/{VERIFICATION}"))
    state = "never" if verification is None else ("ok" if verification.ok else "failed")
    return Entry(
        id=manifest.id,
        created_at=manifest.created_at,
        engine=manifest.engine,
        size=manifest.size,
        label=manifest.label,
        pinned=store.exists(f"{manifest.id}/{PIN}"),
        verified=state,
        verified_at=verification.verified_at if verification else None,
        encrypted=manifest.encrypted,
        schema_revision=manifest.schema_revision,
        source=manifest.source,
        rows=sum(manifest.row_counts.values()),
    )


def list_backups(store: Store) -> list[Entry]:
    """Published backups, oldest first. A folder without a manifest is not a backup."""
    return [entry(store, load_manifest(store, i)) for i in store.complete_ids()]


def set_pin(store: Store, backup_id: str, pinned: bool, warn: Warn | None = None) -> Entry:
    """Pin (never rotated away) or unpin a backup."""
    with store.lock("backup pin" if pinned else "backup unpin", warn):
        manifest = load_manifest(store, backup_id)
        if pinned:
            store.write_bytes(f"{backup_id}/{PIN}", pin_record("pinned by `emrops backup pin`"))
        else:
            store.delete(f"{backup_id}/{PIN}")
        return entry(store, manifest)


@dataclass
class RotateResult:
    dry_run: bool
    tz: str
    policy: retention.Policy
    decisions: list[retention.Decision]
    deleted: list[str]

    @property
    def kept(self) -> list[str]:
        return [d.id for d in self.decisions if d.keep]


def rotate(
    store: Store,
    policy: retention.Policy,
    *,
    tz: str = "UTC",
    dry_run: bool = False,
    warn: Warn | None = None,
) -> RotateResult:
    """Plan (and unless ``dry_run``, apply) the retention policy; returns every decision."""
    if policy.empty:
        raise UsageError(
            "rotate needs at least one --keep-* rule",
            hint="e.g. --keep-last 3 --keep-daily 7 --keep-weekly 4 --keep-monthly 12",
        )
    zone = retention.zone(tz)
    with store.lock("backup rotate", warn):
        entries = list_backups(store)
        candidates = [
            retention.Candidate(e.id, _time(e.created_at), e.verified == "ok", e.pinned)
            for e in entries
        ]
        decisions = retention.plan(candidates, policy, zone)
        deleted: list[str] = []
        if not dry_run:
            for decision in decisions:
                if not decision.keep:
                    store.delete_backup(decision.id)
                    deleted.append(decision.id)
    return RotateResult(dry_run, tz, policy, decisions, deleted)


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
