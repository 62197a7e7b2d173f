"""A backup store in a local folder: files 0600, folders 0700, writes atomic."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from emrops.atomic import fsync_dir
from emrops.backup.lock import Holder, local_lock
from emrops.backup.stores import (
    DeleteRefused,
    NotAFile,
    NotFound,
    Offline,
    OutsideStore,
    Store,
    Warn,
    check_name,
    plain_part,
    too_large,
    write_error,
)
from emrops.errors import EmropsError, UsageError
from emrops.paths import user_path

STAGING = ".staging-"
# A file or folder that may not change (chattr +i or +a, a read-only folder or file system):
# a refusal of this one object, not a broken store.
REFUSED_ERRNOS = {errno.EPERM, errno.EACCES, errno.EROFS}
DELETE_REFUSED_HINT = (
    "the file or its folder may not be changed: check `lsattr -d {file} {folder}` (immutable "
    "or append-only), the folder's permissions and its mount (read-only); the backup stays "
    "until that is lifted"
)


class LocalStore(Store):
    def __init__(self, folder: str | os.PathLike[str]):
        self.root = user_path(folder).absolute()
        self.url = str(self.root)
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(
                f"backup store {self.root} is a file, not a folder",
                hint="point --store (or EMROPS_BACKUP_STORE) at a folder",
            )

    @property
    def identity(self) -> str:
        return str(self.root.resolve())

    def holds_path(self, path: Path) -> bool:
        try:
            return path.resolve().is_relative_to(self.root.resolve())
        except (OSError, RuntimeError):  # a link loop: not the store's
            return False

    def _path(self, name: str, *, follow: bool = True) -> Path:
        """The path of ``name``, refused unless it resolves inside the store (symlinks too).
        ``follow=False`` for what replaces or removes the name itself (a link there is
        replaced or removed, never followed): only its folder must be inside."""
        path = self.root / check_name(name, self.url)
        try:
            resolved = path.resolve() if follow else path.parent.resolve() / path.name
        except (RuntimeError, OSError) as exc:  # a link loop (RuntimeError before 3.13)
            raise OutsideStore(
                f"refusing {name!r} in backup store {self.url}: {exc}",
                hint="a file or folder in the store is a link that leads nowhere; remove it",
            ) from None
        if not resolved.is_relative_to(self.root.resolve()):
            raise OutsideStore(
                f"refusing {name!r}: it resolves to {resolved}, outside backup store {self.url}",
                hint="a folder or file in the store is a link to elsewhere; remove it",
            )
        return path

    @contextlib.contextmanager
    def _access(self, path: Path) -> Iterator[None]:
        """A permission refused while reading the store: backups written by another user
        (files 0600 in 0700 folders). Nothing is known about them: Offline, exit 1, never a
        failed verification."""
        try:
            yield
        except PermissionError as exc:
            where = Path(exc.filename) if exc.filename else path
            raise Offline(
                f"cannot read {where} in backup store {self.url}: {exc.strerror}{_owned_by(where)}",
                hint="run emrops as the user that writes the backups (its files are 0600 in "
                "0700 folders), e.g. with `sudo -u USER`",
            ) from None

    def _ensure_root(self) -> None:
        try:
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:
            if self.root.is_symlink():
                # exists() is False for a dangling link or a loop: say so, not "a file"
                raise UsageError(
                    f"backup store {self.root} is a symbolic link to "
                    f"{os.readlink(self.root)!r}, which leads to no folder (missing, or a loop)",
                    hint="mount or create the folder it points to, or point --store elsewhere",
                ) from None
            raise UsageError(f"backup store {self.root} is a file, not a folder") from None
        except OSError as exc:
            raise EmropsError(
                f"cannot create backup store {self.root}: {exc.strerror}",
                hint="check the path and its permissions",
            ) from exc

    def backup_ids(self) -> list[str]:
        with self._access(self.root):
            if not self.root.is_dir():
                return []
            return sorted(
                p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
            )

    def names(self, backup_id: str) -> list[str]:
        # A folder inside is not a file emrops wrote: remove_folder takes it with the rest.
        folder = self._path(backup_id)
        with self._access(folder):
            if not folder.is_dir():
                return []
            return sorted(
                p.name
                for p in folder.iterdir()
                if (p.is_symlink() or not p.is_dir()) and plain_part(p.name)
            )

    def sizes(self, backup_id: str) -> dict[str, int]:
        folder = self._path(backup_id)
        out = {}
        with self._access(folder):
            if not folder.is_dir():
                return {}
            for p in folder.iterdir():
                with contextlib.suppress(OSError):  # a link to nothing: no size, as missing
                    st = p.stat()
                    if stat.S_ISREG(st.st_mode) and plain_part(p.name):
                        out[p.name] = st.st_size
        return out

    def exists(self, name: str) -> bool:
        # Anything at the name counts (a folder or FIFO where a manifest should be is damage,
        # shown as such, never taken for a crashed run's leftovers and removed); a link to
        # nothing too.
        path = self._path(name)
        with self._access(path):
            return path.is_symlink() or path.exists()

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        with self.open_read(name) as handle:
            data = handle.read() if limit is None else handle.read(limit + 1)
        if limit is not None and len(data) > limit:
            raise too_large(name, self.url, limit)
        return data

    @contextlib.contextmanager
    def open_read(self, name: str) -> Iterator[IO[bytes]]:
        path = self._path(name)
        try:
            # O_NONBLOCK: a FIFO put where a file should be must not hang the reader.
            with self._access(path):
                fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            if path.is_symlink():
                raise NotAFile(
                    f"{name} in backup store {self.url} is a link to nothing "
                    f"({os.readlink(path)!r}): the store was damaged"
                ) from None
            raise NotFound(f"{name} is missing from backup store {self.url}") from None
        except NotADirectoryError:  # a file where the backup's folder should be
            raise NotFound(
                f"{name} is missing from backup store {self.url} ({path.parent.name} is a file, "
                "not a backup folder)"
            ) from None
        except IsADirectoryError:
            raise NotAFile(f"{name} in backup store {self.url} is not a regular file") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotAFile(
                f"{name} in backup store {self.url} is not a regular file (a folder, FIFO or "
                "device is where a file should be: the store was damaged)"
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb") as handle:
            yield handle

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[IO[bytes]]:
        target = self._path(name, follow=False)
        self._ensure_root()
        staging = target.with_name(f"{STAGING}{target.name}.{os.getpid()}")
        try:
            target.parent.mkdir(mode=0o700, exist_ok=True)
            # a fresh file, never through a link planted at the (predictable) staging name
            staging.unlink(missing_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(staging, flags, 0o600)
        except OSError as exc:
            raise write_error(self.url, exc) from exc
        try:
            with os.fdopen(fd, "wb", buffering=1 << 20) as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(staging, target)
            fsync_dir(target.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                staging.unlink()
            raise write_error(self.url, exc) from exc
        except BaseException:
            with contextlib.suppress(OSError):
                staging.unlink()
            raise

    def delete(self, name: str) -> None:
        try:
            self._path(name, follow=False).unlink()
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise NotAFile(
                f"{name} in backup store {self.url} is a folder, not a file (the store was "
                "damaged): nothing was deleted",
                hint="look at what is in it, and remove it by hand",
            ) from None
        except OSError as exc:
            if exc.errno in REFUSED_ERRNOS:
                raise DeleteRefused(
                    f"cannot delete {name} from backup store {self.url}: {exc.strerror}",
                    hint=DELETE_REFUSED_HINT.format(
                        file=self.root / name, folder=(self.root / name).parent
                    ),
                ) from None
            raise EmropsError(
                f"cannot delete {name} from backup store {self.url}: {exc.strerror or exc}"
            ) from exc

    def remove_folder(self, backup_id: str) -> None:
        shutil.rmtree(self._path(backup_id), ignore_errors=True)
        if self.root.is_dir():
            fsync_dir(self.root)

    def lock(
        self, operation: str, warn: Warn | None = None, *, read_only_ok: bool = False
    ) -> contextlib.AbstractContextManager[Holder]:
        self._ensure_root()
        return local_lock(self.root, operation, warn, read_only_ok=read_only_ok)

    def cleanup_staging(self) -> list[str]:
        removed = []
        if self.root.is_dir():
            for path in self.root.glob(f"*/{STAGING}*"):
                if path.parent.is_symlink():  # a folder linked to elsewhere is not the store's
                    continue
                if path.is_dir() and not path.is_symlink():  # no run writes a folder there
                    continue
                path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(self.root)))
        return removed


def _owned_by(path: Path) -> str:
    """`` (owned by USER)`` for the nearest existing part of ``path``, or ""."""
    import pwd

    for part in (path, *path.parents):
        try:
            uid = part.lstat().st_uid
        except OSError:
            continue
        try:
            return f" (owned by {pwd.getpwuid(uid).pw_name})"
        except KeyError:
            return f" (owned by uid {uid})"
    return ""
