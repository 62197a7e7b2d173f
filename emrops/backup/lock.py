"""Store locks: one writer per store, the holder (host, pid) named, stale locks taken over.

Local stores use an advisory ``fcntl`` lock on ``<store>/.lock``; the kernel drops it when
the holder dies (even by SIGKILL), so a lock file that names a holder but is not locked is
stale and is taken over with a warning. Azure stores use a blob lease (see
:mod:`emrops.backup.stores.azure`); both describe the holder with :class:`Holder`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from emrops.errors import Busy, EmropsError
from emrops.logs import get_logger, iso_utc

log = get_logger(__name__)
Warn = Callable[[str], None]


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    operation: str
    since: str

    @classmethod
    def me(cls, operation: str) -> Holder:
        return cls(socket.gethostname(), os.getpid(), operation, iso_utc())

    def describe(self) -> str:
        return f"{self.operation} by pid {self.pid} on {self.host} since {self.since}"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def parse(cls, text: str | bytes | None) -> Holder | None:
        """The holder named by a lock file; None for anything else (the file is not trusted:
        a forged one, e.g. nested past the parser's recursion limit, names no holder)."""
        if not text:
            return None
        try:
            holder = cls(**json.loads(text))
        except (ValueError, TypeError, RecursionError):
            return None
        texts = (holder.host, holder.operation, holder.since)
        if type(holder.pid) is not int or not all(isinstance(t, str) for t in texts):
            return None
        return holder


def busy(store: str, holder: Holder | None) -> Busy:
    who = holder.describe() if holder else "another process"
    return Busy(
        f"backup store {store} is locked: {who}",
        hint="wait for that run to finish (a lock whose holder died is taken over automatically)",
    )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def not_a_lock_file(path: Path, what: str) -> EmropsError:
    return EmropsError(
        f"the lock file {path} is {what}: refusing to use it (nothing was written)",
        hint="remove it; emrops creates it as a plain file (the store was changed by hand)",
    )


@contextlib.contextmanager
def local_lock(
    folder: Path, operation: str, warn: Warn | None = None, *, read_only_ok: bool = False
) -> Iterator[Holder]:
    """Hold ``folder/.lock`` for the duration; raise Busy (exit 75) naming the holder.
    ``read_only_ok``: on a read-only file system (nothing can change the store) go on without
    the lock, with a warning, instead of failing."""
    path = folder / ".lock"
    try:
        # never through a link: the holder is written over the file, so a .lock linked to
        # elsewhere would have its target truncated
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise not_a_lock_file(path, f"a symbolic link to {os.readlink(path)!r}") from None
        if read_only_ok and exc.errno == errno.EROFS:
            message = (
                f"backup store {folder} is on a read-only file system: {operation} goes on "
                "without its lock (nothing can change the store) and records no result in it"
            )
            log.warning(message)
            if warn:
                warn(message)
            yield Holder.me(operation)
            return
        if read_only_ok and exc.errno in (errno.EACCES, errno.EPERM):
            with _read_only_lock(path, operation, exc, warn) as me:
                yield me
            return
        hint = None
        if exc.errno == errno.EROFS:
            hint = "the store is on a read-only file system: only verify, restore and copy "
            hint += "(from it) work there"
        raise EmropsError(f"cannot create the lock file {path}: {exc.strerror}", hint) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise not_a_lock_file(path, "not a regular file")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy(str(folder), Holder.parse(os.pread(fd, 4096, 0))) from None
        previous = Holder.parse(os.pread(fd, 4096, 0))
        if previous is not None:
            # The lock was free but still names a holder: that run died without releasing it.
            message = (
                f"taking over a stale lock on {folder}: {previous.describe()} (no longer running)"
            )
            log.warning(message)
            if warn:
                warn(message)
        me = Holder.me(operation)
        _name_holder(fd, path, me, warn)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _name_holder(fd: int, path: Path, me: Holder, warn: Warn | None) -> None:
    """Write the holder into the lock file. The flock is the lock; the text only names the
    holder for a run that finds it busy. On a full store (ENOSPC, EDQUOT) the lock is held
    without a name, with a warning: the operation then says for itself what it could not
    write (verify, restore and copy from the store need no space in it)."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.to_json().encode(), 0)
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise EmropsError(f"cannot write the lock file {path}: {exc.strerror}") from exc
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a half-written holder names nobody either
        message = (
            f"backup store {path.parent} is full ({exc.strerror}): its lock is held but does "
            "not name this run"
        )
        log.warning(message)
        if warn:
            warn(message)


@contextlib.contextmanager
def _read_only_lock(
    path: Path, operation: str, refused: OSError, warn: Warn | None
) -> Iterator[Holder]:
    """For an operation that only reads a store this user may not write (another user's
    backups, an immutable folder): the lock is still taken when ``.lock`` can be opened for
    reading (flock needs no write access), so a rotate or run of the owner waits; without
    it, the operation goes on unlocked. Either way it records nothing in the store."""
    folder = path.parent
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        fd = -1
    if fd >= 0 and not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise not_a_lock_file(path, "not a regular file")
    how = "holds its lock" if fd >= 0 else "goes on without its lock"
    message = (
        f"backup store {folder} cannot be written by this user ({refused.strerror}): "
        f"{operation} {how} and records no result in it"
    )
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise busy(str(folder), Holder.parse(os.pread(fd, 4096, 0))) from None
        log.warning(message)
        if warn:
            warn(message)
        yield Holder.me(operation)
    finally:
        if fd >= 0:
            os.close(fd)  # drops the flock
