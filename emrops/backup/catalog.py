"""``backup list``, ``pin``/``unpin`` and ``rotate`` over the published backups of a store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emrops.backup import retention
from emrops.backup.lock import Warn
from emrops.backup.manifest import (
    ID_PATTERN,
    MAX_DOCUMENT,
    PIN,
    VERIFICATION,
    Manifest,
    Verification,
    id_time,
    load_document,
)
from emrops.backup.run import pin_record
from emrops.backup.schemas import InvalidDocument, check_pin
from emrops.backup.sources import Source, matches
from emrops.backup.stores import DeleteRefused, NotFound, Offline, OutsideStore, Store
from emrops.backup.verify import load_manifest
from emrops.errors import CheckFailed, EmropsError, UsageError


@dataclass
class Entry:
    """One backup as listed. ``broken`` is the reason its manifest is invalid (then only
    ``id`` is known; the other fields are placeholders) and ``verified`` is "broken"."""

    id: str
    created_at: str
    engine: str
    size: int
    label: str
    pinned: bool
    verified: str  # "ok", "failed", "never", "invalid" (record) or "broken" (manifest)
    verified_at: str | None
    encrypted: bool
    schema_revision: str | None
    source: str
    rows: int
    source_id: dict[str, Any] | None = None
    sealed: bool = False
    reason: str = ""  # why verified is not "ok": the failed checks, or what is invalid
    broken: str | None = None

    @property
    def counts_as_verified(self) -> bool:
        return self.verified == "ok" and self.broken is None


def _verification(store: Store, manifest: Manifest) -> tuple[str, str | None, str]:
    """(state, verified_at, reason) from ``<id>/verification.json``."""
    try:
        record = Verification.from_json(
            store.read_bytes(f"{manifest.id}/{VERIFICATION}", limit=MAX_DOCUMENT), manifest.id
        )
    except NotFound:
        return "never", None, ""
    except (CheckFailed, OutsideStore, Offline) as exc:  # a link to elsewhere is not followed
        return "invalid", None, exc.message
    if record.manifest_seal != manifest.seal:
        # the result is of another manifest than the one in the store now
        return "invalid", record.verified_at, "the manifest changed after it was verified"
    if not record.ok:
        return "failed", record.verified_at, record.reason
    changed = _changed_since(store, manifest)
    if changed is not None:
        # The record says what the files were when verified; a file deleted or cut since
        # (a cleanup script, bit rot, a lifecycle rule) leaves a backup that cannot be
        # restored. Counted as verified, it held a --keep-last slot while rotate deleted the
        # intact older ones, and health took it for a fresh good backup.
        return "failed", record.verified_at, f"verified ok, but since then {changed}"
    return "ok", record.verified_at, ""


def _changed_since(store: Store, manifest: Manifest) -> str | None:
    """What no longer matches the manifest in the stored files' presence and size (one
    listing; the checksums are verify's job), or None."""
    try:
        sizes = store.sizes(manifest.id)
    except (OutsideStore, Offline) as exc:
        return exc.message
    for file in manifest.files:
        size = sizes.get(file.name)
        if size is None:
            return f"{file.name} is missing (run `emrops backup verify {manifest.id}`)"
        if size != file.size:
            return (
                f"{file.name} is {size} bytes, the manifest says {file.size} "
                f"(run `emrops backup verify {manifest.id}`)"
            )
    return None


def _pinned(store: Store, backup_id: str) -> tuple[bool, str]:
    """An invalid pin record still pins (keeping a backup is the safe side)."""
    try:
        data = store.read_bytes(f"{backup_id}/{PIN}", limit=MAX_DOCUMENT)
    except NotFound:
        return False, ""
    except (CheckFailed, OutsideStore, Offline) as exc:  # not a file, a link, archived:
        # like an invalid record, it still pins
        return True, f"pin record is invalid ({exc.message}); treated as pinned"
    try:
        check_pin(load_document(data), backup_id)
    except (ValueError, InvalidDocument) as exc:
        return True, f"pin record is invalid ({exc}); treated as pinned"
    return True, ""


def entry(store: Store, manifest: Manifest) -> Entry:
    state, verified_at, reason = _verification(store, manifest)
    pinned, pin_note = _pinned(store, manifest.id)
    return Entry(
        id=manifest.id,
        created_at=manifest.created_at,
        engine=manifest.engine,
        size=manifest.size,
        label=manifest.label,
        pinned=pinned,
        verified=state,
        verified_at=verified_at,
        encrypted=manifest.encrypted,
        schema_revision=manifest.schema_revision,
        source=manifest.source,
        rows=sum(manifest.row_counts.values()),
        source_id=manifest.source_id,
        sealed=manifest.seal is not None,
        reason="; ".join(r for r in (reason, pin_note) if r),
    )


def broken_entry(store: Store, backup_id: str, reason: str) -> Entry:
    pinned, _ = _pinned(store, backup_id) if ID_PATTERN.fullmatch(backup_id) else (False, "")
    return Entry(
        id=backup_id,
        created_at=_id_time(backup_id),
        engine="?",
        size=0,
        label="",
        pinned=pinned,
        verified="broken",
        verified_at=None,
        encrypted=False,
        schema_revision=None,
        source="?",
        rows=0,
        reason=reason,
        broken=reason,
    )


def _id_time(backup_id: str) -> str:
    """The time in a backup id (the only date a broken entry has), or the epoch."""
    moment = id_time(backup_id)
    if moment is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return "1970-01-01T00:00:00.000Z"


CHANGED = "the manifest does not match its seal: a field was changed after it was written"


def list_backups(store: Store, source: Source | None = None) -> list[Entry]:
    """Published backups (those with a manifest), oldest first; ``source`` keeps only its own.

    A manifest that cannot be read, is invalid or does not match its seal gives a broken
    entry with the reason: it never stops the others from being listed (with ``source``,
    broken entries are left out: they belong to no known source)."""
    out = []
    for backup_id in store.complete_ids():
        try:
            manifest = load_manifest(store, backup_id)
        except NotFound:
            continue  # deleted since it was listed (list takes no lock: a rotate may run)
        except (CheckFailed, UsageError, Offline) as exc:
            if source is None:
                out.append(broken_entry(store, backup_id, exc.message))
            continue
        if manifest.seal_valid is False:  # changed after it was written: as broken
            if source is None:
                out.append(broken_entry(store, backup_id, CHANGED))
            continue
        if source is None or matches(manifest, source):
            out.append(entry(store, manifest))
    return out


def set_pin(store: Store, backup_id: str, pinned: bool, warn: Warn | None = None) -> Entry:
    """Pin (never rotated away) or unpin a backup."""
    with store.lock("backup pin" if pinned else "backup unpin", warn):
        manifest = load_manifest(store, backup_id)
        if pinned:
            store.write_bytes(
                f"{backup_id}/{PIN}", pin_record(backup_id, "pinned by `emrops backup pin`")
            )
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
    refused: list[tuple[str, str]] = field(default_factory=list)  # (id, why) kept by the store
    store: str = ""

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
            retention.Candidate(e.id, _time(e.created_at), e.counts_as_verified, e.pinned)
            for e in entries
            if e.broken is None
        ]
        decisions = retention.plan(candidates, policy, zone, now=datetime.now(UTC))
        # a broken manifest is never deleted by rotate: it may be the only trace of a backup
        # someone changed, and its data files may still restore by hand
        decisions += [
            retention.Decision(e.id, _time(e.created_at), True, (f"broken, kept: {e.broken}",))
            for e in entries
            if e.broken is not None
        ]
        deleted: list[str] = []
        refused: list[tuple[str, str, str | None]] = []
        if not dry_run:
            for decision in decisions:
                if not decision.keep:
                    try:
                        store.delete_backup(decision.id)
                    except DeleteRefused as exc:
                        # one immutable backup must not keep the older ones from rotating;
                        # other failures (store unreachable, lock lost) stop the rotate
                        refused.append((decision.id, exc.message, exc.hint))
                        continue
                    deleted.append(decision.id)
    result = RotateResult(
        dry_run, tz, policy, decisions, deleted, [(i, why) for i, why, _ in refused], store.url
    )
    if refused:
        raise RotateIncomplete(result, refused[0][2])
    return result


SHOWN_REASONS = 3


class RotateIncomplete(EmropsError):
    """The policy was applied except for backups the store refused to delete (exit 1);
    ``result`` holds every decision, what was deleted and what was refused."""

    def __init__(self, result: RotateResult, hint: str | None):
        self.result = result
        # the first reasons in full; past them (a container-wide policy refuses every one)
        # only the ids, so the message stays readable
        shown = SHOWN_REASONS
        refused = "; ".join(f"{backup_id}: {why}" for backup_id, why in result.refused[:shown])
        if len(result.refused) > shown:
            rest = [backup_id for backup_id, _ in result.refused[shown:]]
            refused += f"; and {len(rest)} more: {', '.join(rest)}"
        deleted = ", ".join(result.deleted) or "none"
        super().__init__(
            f"rotate could not delete {len(result.refused)} of the "
            f"{len(result.refused) + len(result.deleted)} backup(s) no rule keeps, which stay "
            f"in {result.store}: {refused}. Deleted: {deleted}",
            hint=(hint or "check what keeps the store from deleting them")
            + "; every backup a rule keeps is untouched, and rotate deletes the rest at its "
            "next run once the store allows it",
        )


def _time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
