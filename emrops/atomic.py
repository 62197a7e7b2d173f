"""Atomic file writes: write beside, fsync, rename, fsync the folder.

A reader sees either the old file or the complete new one, never a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from emrops.errors import EmropsError, UsageError


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_file_path(path: str | os.PathLike[str], what: str = "output file") -> None:
    """Raise UsageError when ``path`` cannot become a file: it is a folder, a folder on its way
    is a file, or the nearest existing folder is not writable. For output options, checked
    before the work whose result they receive (a benchmark, a load test)."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {target} is a folder", hint="give a file name")
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{what} {target}: {parent} is a file, not a folder")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {target}: {parent} is not writable")


def check_folder_path(path: str | os.PathLike[str], what: str = "output folder") -> None:
    """Raise UsageError when ``path`` cannot be (or become) a folder to write into."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} {folder} is a file, not a folder")
    parent = next((p for p in folder.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UsageError(f"{what} {folder}: {parent} is a file, not a folder")


def require_writable_folder(folder: Path, what: str, hint: str) -> None:
    """Raise UsageError unless files can be created in ``folder`` (or, when it does not exist
    yet, in its nearest existing parent, where it would be made). Tried with a probe file that
    is removed at once, not guessed with os.access (which says yes to root on a read-only
    mount); nothing is left behind, and a missing folder is not created here."""
    here = next((p for p in (folder, *folder.parents) if p.exists()), None)
    try:
        if here is None or not here.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(here))
        fd, probe = tempfile.mkstemp(prefix=".emrops-probe-", dir=here)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(
            f"{what} {folder} is not writable: {exc.strerror or exc}", hint=hint
        ) from exc


def _cannot_write(target: Path, exc: OSError) -> EmropsError:
    if exc.errno in _NO_ROOM:
        return EmropsError(
            f"cannot write {target}: {exc.strerror or exc} (nothing was changed there)",
            hint=f"free space on the file system of {target.parent} (or raise the quota)",
        )
    return EmropsError(
        f"cannot write {target}: {exc.strerror or exc}",
        hint="check the path, its folder's permissions and free space",
    )


# the file system has no room for what is being written: the writer's fault never
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: int = 0o600) -> Iterator[IO[bytes]]:
    """Open a temporary file beside ``path`` for binary writing; publish it on success.

    On any exception the temporary file is removed and ``path`` is left untouched. A path
    that cannot be created (its folder is a file, a read-only folder) raises EmropsError.

    A symlink is followed: the file it points to is replaced and the link kept. A path that
    is not a file (``/dev/null``, ``/dev/stdout``, a named pipe) is written to as it is: a
    rename over it would put a regular file in the device's place (as root, for everyone on
    the machine), so there is nothing atomic to do there.
    """
    target = Path(path)
    if _is_stream(target):
        with _stream_open(target) as stream:
            yield stream
        return
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise _cannot_write(target, exc) from exc
    try:
        os.fchmod(fd, mode)
        handle = os.fdopen(fd, "wb")
        try:
            try:
                yield handle
            except OSError as exc:  # the caller's writes: a full disk is named as such
                if exc.errno in _NO_ROOM:
                    raise _cannot_write(target, exc) from exc
                raise
            try:
                handle.flush()
                os.fsync(handle.fileno())
            except OSError as exc:
                raise _cannot_write(target, exc) from exc
        finally:
            # after a failed write the buffer still holds what did not fit, and close() would
            # try again and raise over the error above; after fsync there is nothing left
            with contextlib.suppress(OSError):
                handle.close()
        try:
            os.replace(tmp, target)  # (onto a folder: IsADirectoryError)
        except OSError as exc:
            raise _cannot_write(target, exc) from exc
        fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _is_stream(target: Path) -> bool:
    """True when ``target`` (through any symlink) exists and is neither a file nor a folder."""
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@contextlib.contextmanager
def _stream_open(target: Path) -> Iterator[IO[bytes]]:
    """Write straight into a device or pipe (no temporary file, no rename, no fsync)."""
    try:
        handle = open(target, "wb")  # noqa: SIM115 - closed below, errors named
    except OSError as exc:
        raise _cannot_write(target, exc) from exc
    try:
        yield handle
        handle.flush()
    except OSError as exc:
        raise _cannot_write(target, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            handle.close()


def write_bytes(path: str | os.PathLike[str], data: bytes, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``data`` (file mode 0600 by default)."""
    with atomic_open(path, mode) as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``text`` encoded as UTF-8."""
    write_bytes(path, text.encode("utf-8"), mode)


def write_json(path: str | os.PathLike[str], data: Any, mode: int = 0o600) -> None:
    """Atomically write ``data`` as indented JSON with a trailing newline."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", mode)


def append_line(path: str | os.PathLike[str], line: str, mode: int = 0o600) -> None:
    """Append one line (an audit or reject entry) and fsync; a new file is created ``mode``.

    O_APPEND makes each line land whole at the end even with several writers; an existing
    file's mode is left as it is (a folder-level 0700 keeps older files private).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
        if stat.S_ISREG(os.fstat(fd).st_mode):  # a device or pipe cannot be fsynced (EINVAL)
            os.fsync(fd)
    finally:
        os.close(fd)
