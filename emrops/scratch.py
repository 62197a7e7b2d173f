"""Scratch files and folders that a killed run does not leave behind for ever.

Every scratch file or folder (verify's decoded copy, the backup API's snapshot copy, restore's
``.tmp`` beside the target) is named per run, ``<prefix><pid>-<token><suffix>``, and its owner
holds an ``flock`` on it for as long as it lives. The next run of any command that makes such
files sweeps the folder first: an entry is removed only when the pid in its name is not running
*and* its lock is free, so a live run's file is never touched (the pid covers the instant
between creating a file and locking it; the lock covers a pid reused by another process).
SQLite's own locks are POSIX record locks, which are independent of ``flock`` on Linux, so the
scratch lock does not interfere with SQLite on the same file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from emrops.logs import get_logger

log = get_logger(__name__)

SIDECARS = ("-wal", "-shm", "-journal")
# The prefixes of scratch entries emrops makes in the temporary folder (swept by each command).
TMP_PREFIXES = ("emrops-verify-", "emrops-snapshot-", "emrops-restore-", "emrops-drill-")


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _name(prefix: str, suffix: str) -> str:
    return f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{suffix}"


def _lock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


@dataclass
class Claimed:
    """A per-run scratch file and the descriptor holding its lock; :meth:`release` removes it
    (and its SQLite sidecars) and drops the lock."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd < 0:
            return
        for name in (self.path.name, *(self.path.name + s for s in SIDECARS)):
            with contextlib.suppress(FileNotFoundError):
                (self.path.parent / name).unlink()
        os.close(self.fd)
        self.fd = -1


def claim(folder: Path, prefix: str, suffix: str = "") -> Claimed:
    """Create ``folder/<prefix><pid>-<token><suffix>`` (empty, 0600) and lock it, after sweeping
    the leftovers of dead runs with the same prefix and suffix."""
    sweep(folder, prefix, suffix)
    path = folder / _name(prefix, suffix)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        _lock(fd)
    except BaseException:
        os.close(fd)
        path.unlink()
        raise
    return Claimed(path, fd)


@contextlib.contextmanager
def scratch_file(folder: Path, prefix: str, suffix: str = "") -> Iterator[Path]:
    """:func:`claim` as a context manager: the file is removed at the end."""
    claimed = claim(folder, prefix, suffix)
    try:
        yield claimed.path
    finally:
        claimed.release()


@contextlib.contextmanager
def scratch_dir(parent: Path | None, prefix: str) -> Iterator[Path]:
    """A new folder ``<parent or TMPDIR>/<prefix><pid>-<token>`` (0700), locked while in use and
    removed with everything in it at the end. Leftovers of dead runs are swept first."""
    where = Path(parent or tempfile.gettempdir())
    sweep_tmp(where)
    path = where / _name(prefix, "")
    path.mkdir(mode=0o700)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _lock(fd)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


def sweep_tmp(folder: Path | None = None) -> list[str]:
    """Sweep every kind of emrops scratch entry from ``folder`` (default: TMPDIR)."""
    where = Path(folder or tempfile.gettempdir())
    removed: list[str] = []
    for prefix in TMP_PREFIXES:
        removed += sweep(where, prefix, "")
        removed += sweep(where, prefix, ".db")
    return removed


def sweep(folder: Path, prefix: str, suffix: str = "") -> list[str]:
    """Remove ``folder``'s entries named by :func:`scratch_file`/:func:`scratch_dir` with this
    prefix and suffix whose run is dead (pid not running and lock free); returns their names."""
    pattern = re.compile(
        re.escape(prefix)
        + r"(?P<pid>[0-9]+)-[0-9a-f]{8}"
        + re.escape(suffix)
        + r"(?P<side>"
        + "|".join(re.escape(s) for s in SIDECARS)
        + r")?",
        re.DOTALL,
    )
    removed: list[str] = []
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return removed
    for name in entries:
        match = pattern.fullmatch(name)
        if match is None or pid_alive(int(match["pid"])):
            continue
        main = folder / (name[: match.start("side")] if match["side"] else name)
        if not _lock_free(main):
            continue
        target = folder / name
        try:
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("could not remove %s left by a killed run: %s", target, exc)
            continue
        log.warning("removed %s, left by a run that died (pid %s)", target, match["pid"])
        removed.append(name)
    return removed


def _lock_free(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True  # a sidecar whose main file is gone
    except OSError:
        return False
    try:
        try:
            _lock(fd)
        except BlockingIOError:
            return False
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


def short_name(name: str, limit: int = 180) -> str:
    """``name``, or when its bytes are more than ``limit``, its first 160 bytes (cut on a
    character boundary) and a digest of the whole: room for what emrops appends to a file's
    name (scratch and aside suffixes, about 30 to 60 bytes) within the 255 bytes a file
    system allows."""
    encoded = os.fsencode(name)
    if len(encoded) <= limit:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:12]
    return encoded[:160].decode("utf-8", "ignore") + "~" + digest


def restore_scratch_prefix(path: Path) -> str:
    """``.NAME.restore-`` for the scratch file beside ``path`` (NAME shortened by
    :func:`short_name`)."""
    return f".{short_name(path.name)}.restore-"
