"""The pinned pre-migration backup: taken once per unchanged source, unpinned when settled.

A rerun of the same migration (after a rollback, a refused or killed run) reuses the backup
of the earlier run when the source is unchanged: same file, same size and modification time
of the file and its WAL (what :func:`emrops.migrate.guard.fingerprint` records; a commit
changes one of them), into the same store. The index of such backups lives in the state
directory (``migrate/pre-migration-backups.json``, mode 0600). ``rollback`` and a completed
cutover unpin the backup (it stays in the store until rotation removes it), so repeated runs
no longer pile up pinned copies.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emrops import atomic
from emrops.errors import EmropsError
from emrops.migrate.guard import fingerprint

INDEX = "pre-migration-backups.json"

# what taking the backup imports (about 25 ms; SQLAlchemy and jsonschema are no longer among
# them: a SQLite backup reads its source's identity with the light URL reader, and only reusing
# a backup reads manifests). Imports hold the GIL, so a heavy preload slowed the planning's own
# Python work by as much as it saved.
_BACKUP_MODULES = ("emrops.backup.run", "emrops.backup.stores")
_preloading: list[threading.Thread] = []


def preload() -> None:
    """Import the backup modules in a thread, while the run plans (SQLite's scans release the
    GIL); :func:`preloaded` waits for it before the first use."""
    if not _preloading:
        thread = threading.Thread(target=_import_all, name="emrops-preload", daemon=True)
        _preloading.append(thread)
        thread.start()


def _import_all() -> None:
    for name in _BACKUP_MODULES:
        with contextlib.suppress(Exception):  # a real import error surfaces at the use
            importlib.import_module(name)


def preloaded() -> None:
    """Wait for :func:`preload`'s imports (one thread imports them: never two at once)."""
    for thread in _preloading:
        thread.join()


@dataclass
class Reusable:
    backup_id: str
    size: int  # bytes in the store


def _index_path(state_dir: Path) -> Path:
    return state_dir / "migrate" / INDEX


def _key(source: Path, store: str) -> str:
    return f"{source.resolve()}|{store}"


def _load(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_index_path(state_dir).read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(state_dir: Path, data: dict[str, Any]) -> None:
    path = _index_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(path, data)


def find(
    state_dir: Path, source: Path, store_spec: str, settings: Any, *, repin: bool = True
) -> Reusable | None:
    """The backup of an earlier run of this unchanged source in this store, pinned again
    (``repin``) if a rollback had unpinned it; None when there is none (or the source changed
    since)."""
    entry = _load(state_dir).get(_key(source, store_spec))
    if not entry or entry.get("fingerprint") != fingerprint(source):
        return None
    preloaded()
    from emrops.backup.catalog import set_pin
    from emrops.backup.manifest import MANIFEST, PIN
    from emrops.backup.stores import open_store
    from emrops.backup.verify import load_manifest

    store = open_store(store_spec, settings)
    backup_id = str(entry["backup_id"])
    if not store.exists(f"{backup_id}/{MANIFEST}"):
        if repin:
            forget(state_dir, source, store_spec)
        return None
    if repin and not store.exists(f"{backup_id}/{PIN}"):
        set_pin(store, backup_id, True)  # under the store's lock, as `backup pin` does
    return Reusable(backup_id, load_manifest(store, backup_id).size)


def label_prefix(run_id: str) -> str:
    """How the pinned backup of run ``run_id`` starts its label (start._backup writes it)."""
    return f"pre-migration {run_id} of "


def find_of_run(store_spec: str, settings: Any, run_id: str) -> str | None:
    """The pinned backup run ``run_id`` published, found by its label in the store: for a run
    killed after publishing it and before recording it (index and journal), the window
    between the manifest's rename and the next write."""
    preloaded()
    from emrops.backup.catalog import list_backups, set_pin
    from emrops.backup.stores import open_store

    store = open_store(store_spec, settings)
    found = [
        e
        for e in list_backups(store)
        if e.verified != "broken" and e.label.startswith(label_prefix(run_id))
    ]
    if not found:
        return None
    if not found[-1].pinned:  # killed before its pin was written, too
        set_pin(store, found[-1].id, True)
    return found[-1].id


def remember(
    state_dir: Path, source: Path, store_spec: str, backup_id: str, fp: dict[str, Any]
) -> None:
    """Record the backup taken of ``source`` as it was (``fp``: its fingerprint then)."""
    data = _load(state_dir)
    data[_key(source, store_spec)] = {"backup_id": backup_id, "fingerprint": fp}
    _save(state_dir, data)


def forget(state_dir: Path, source: Path, store_spec: str) -> None:
    data = _load(state_dir)
    if data.pop(_key(source, store_spec), None) is not None:
        _save(state_dir, data)


def unpin(store_spec: str, settings: Any, backup_id: str) -> bool:
    """Unpin ``backup_id`` (rotation may remove it from now on); False when it is gone."""
    from emrops.backup.catalog import set_pin
    from emrops.backup.manifest import MANIFEST
    from emrops.backup.stores import open_store

    store = open_store(store_spec, settings)
    if not store.exists(f"{backup_id}/{MANIFEST}"):
        return False
    set_pin(store, backup_id, False)  # under the store's lock, as `backup unpin` does
    return True


def estimate(state_dir: Path, source: Path, store_spec: str | None, settings: Any) -> str:
    """What the plan says about the backup `run` would take (or reuse), with its size."""
    if not store_spec:
        return "no backup store configured (backup.store): run takes no pre-migration backup"
    try:
        found = find(state_dir, source, store_spec, settings, repin=False)
    except (EmropsError, OSError):  # the plan only informs; run reports store errors
        found = None
    if found is not None:
        return (
            f"pre-migration backup: run reuses {found.backup_id} ({found.size} bytes; the "
            "source is unchanged since)"
        )
    files = [Path(f"{source}{suffix}") for suffix in ("", "-wal")]
    size = sum(f.stat().st_size for f in files if f.exists())
    return (
        f"pre-migration backup: run takes a pinned backup of the source ({size} bytes before "
        "zstd compression) into the backup store"
    )
