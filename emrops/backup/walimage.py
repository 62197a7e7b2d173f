"""A consistent image of a live SQLite database, read straight from its files in one pass.

The state a reader sees is the main file's pages overlaid by the WAL frames up to the last
commit its snapshot includes (``mxFrame`` in the wal-index header, the ``-shm`` file). So:

1. Open a read transaction and read the wal-index header just before and just after it
   starts. When the two are identical (``iChange`` grows with every commit), no commit
   happened in between and the header is our snapshot: ``mxFrame`` and the WAL salts.
2. Map each page to its newest WAL frame at or below ``mxFrame`` (frame salts must match).
3. Stream pages 1..``page_count`` (read inside the transaction): from the WAL frame when the
   page has one, otherwise from the main file.
4. Check the WAL header's salts again at the end.

Why it is consistent while the app writes: our read lock stops checkpoints from copying any
frame after our snapshot into the main file, and stops the WAL from being restarted while we
use it. The one case where it may be restarted is a reader on read-lock 0 (the WAL was fully
checkpointed when we began): then the main file alone is the snapshot and nothing writes it,
but the WAL frames we overlay could be overwritten, which always rewrites the WAL header's
salts first, so step 4 catches it and the caller starts again. Anything unexpected (no
``-shm``, another wal-index version, the header never settling) raises ``Unreadable`` and the
caller falls back to the online backup API. A rollback-journal database needs none of this:
the read transaction's SHARED lock keeps every writer out of the file.

Nothing is written to the source: the connection is read-only and files are only read.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
from pathlib import Path

from emrops.db.sqlite_file import check_one_name, open_sqlite
from emrops.errors import DatabaseError

WAL_HEADER = 32
FRAME_HEADER = 24
SHM_HEADER = 48  # one copy of WalIndexHdr; the second copy follows it
SHM_VERSION = 3007000
CHUNK_PAGES = 256
ATTEMPTS = 50


class Unreadable(Exception):
    """The files are not in a shape this reader handles; use the online backup API."""


class PageCountMismatch(DatabaseError):
    """The image's page count is not the named file's: never a published backup."""


class Restarted(Exception):
    """The files changed under the read in a way the snapshot does not survive (the WAL was
    restarted in the read-lock 0 case, ...); read the image again. The text says what."""

    def __init__(self, why: str = "the WAL restarted during the read"):
        super().__init__(why)


class SourceCutShort(DatabaseError):
    """The main file ends before the last page the image takes from it: never published."""


CUT_SHORT_HINT = (
    "the file was truncated (an interrupted copy or download, a full disk, a `truncate`); "
    "restore the last good backup (`emrops backup restore --latest`), or, if this file is all "
    "there is, recover what it holds into a new file (`sqlite3 {path} .recover | sqlite3 "
    "recovered.db`) and back that up"
)


PAGE_COUNT_HINT = (
    "the file is cut short or was written by a tool that does not keep the header's page "
    "count (or a size that is not a whole number of pages); check it with `sqlite3 {path} "
    "'PRAGMA integrity_check'` and, on a copy, `VACUUM INTO` a new file and back that up; "
    "the backup is refused so that a wrong image is never kept"
)


def header_count(header: bytes) -> int | None:
    """The page count in a database header, or None when the header marks it unreliable."""
    if len(header) < 100:
        return None
    count = int.from_bytes(header[28:32], "big")
    if count == 0 or header[92:96] != header[24:28]:  # version-valid-for != change counter
        return None
    return count


def _same_file(fd: int, path: Path) -> None:
    got, want = os.fstat(fd), os.stat(path)
    if (got.st_dev, got.st_ino) != (want.st_dev, want.st_ino):
        raise DatabaseError(f"{path} was replaced while it was being opened")


def names_file(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (not replaced, not deleted)."""
    try:
        want = os.stat(path)
    except FileNotFoundError:
        return False
    got = os.fstat(fd)
    return (got.st_dev, got.st_ino) == (want.st_dev, want.st_ino)


def page_size_of(header: bytes) -> int:
    size = int.from_bytes(header[16:18], "big")
    return 65536 if size == 1 else size


class LiveImage:
    """A file-like ``read(n)`` over the database image of one read transaction.

    Use as a context manager; ``db`` is the read-only connection holding the snapshot, so
    row counts taken on it belong to the same point in time as the pages.
    """

    def __init__(self, path: Path, timeout: float = 30.0):
        self.path = path
        # SQLite names the -wal and -shm after the file a symlink points to (it resolves
        # the path); reading them beside the link would take another database's WAL (a stale
        # or planted one) for this one's and publish a wrong image that verifies.
        self.files = os.path.realpath(path)
        self.timeout = timeout
        self.conn: sqlite3.Connection | None = None
        self.db_fd = -1
        self.wal_fd = -1
        self.shm_fd = -1
        self.frames: dict[int, int] = {}  # page number -> offset of its data in the WAL
        self.salts = b""
        self.wal = False
        self.page_size = 0
        self.page_count = 0
        self.next_page = 1
        self.size = 0
        self.wal_page_size = 0
        self.commit_pages = 0  # database size after the newest commit frame in our snapshot

    # -- setup -------------------------------------------------------------------------
    def open(self) -> LiveImage:
        """Start the read transaction and map the WAL; raises Unreadable or Restarted."""
        try:
            self.db_fd = os.open(self.path, os.O_RDONLY)
            self.conn = open_sqlite(
                self.path, mode="ro", timeout=self.timeout, isolation_level=None
            )
            _same_file(self.db_fd, self.path)
            check_one_name(self.path, self.db_fd)
            header = os.pread(self.db_fd, 100, 0)
            if len(header) < 100:
                raise Unreadable("the file is shorter than an SQLite header")
            # SQLite reads through a -wal whenever one exists beside the file, whatever the
            # header says (a -wal left beside a file renamed into place): so do we.
            self.wal = (header[18] == 2 and header[19] == 2) or os.path.exists(f"{self.files}-wal")
            if self.wal:
                self._begin_wal()
            else:
                self._begin()
            self._check_same_database()
            self.page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
            self.page_count = int(self.db.execute("PRAGMA page_count").fetchone()[0])
            if self.page_size != page_size_of(header):
                raise Unreadable("the header's page size differs from the connection's")
            if self.wal and self.frames and self.page_size != self.wal_page_size:
                raise Unreadable("the WAL's page size differs from the database's")
            self._check_whole_pages()
            self._check_page_count()
            self.size = self.page_size * self.page_count
        except BaseException:
            self.close()
            raise
        return self

    def __enter__(self) -> LiveImage:
        return self if self.conn is not None else self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        # The connection first: closing any descriptor of a file drops every POSIX lock this
        # process holds on it, the connection's read locks included.
        if self.conn is not None:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None
        for fd in (self.db_fd, self.wal_fd, self.shm_fd):
            if fd >= 0:
                os.close(fd)
        self.db_fd = self.wal_fd = self.shm_fd = -1

    @property
    def db(self) -> sqlite3.Connection:
        assert self.conn is not None, "open() first"
        return self.conn

    def _check_same_database(self) -> None:
        """Inside the read transaction, the files we read must be the ones the connection reads.
        The journal mode was taken from the header before the transaction began: a switch in
        between (``PRAGMA journal_mode`` by another process) left the connection reading
        through a WAL whose frames the image would leave out, or the other way round. A file
        renamed over the path before our -wal/-shm were opened by name would pair its WAL with
        our main file. Neither can happen once this check passes: a switch needs an exclusive
        lock, and descriptors keep the files we read. Both are rare windows: read again."""
        mode = self.db.execute("PRAGMA journal_mode").fetchone()[0]
        if (mode == "wal") != self.wal:
            raise Restarted(f"its journal mode changed to {mode} as the read began")
        if not names_file(self.path, self.db_fd):
            raise Restarted("the file was replaced or deleted as the read began")

    def _check_whole_pages(self) -> None:
        """Every page the image takes from the main file must be in it whole. SQLite reads the
        missing bytes of a file cut inside its last page as zeros, without an error, and
        integrity_check does not notice zeros inside a record or an overflow page: such an
        image was published, and verified. Under our read lock no writer shrinks the file below
        our snapshot (a checkpoint truncates only to the size of the newest commit), so a page
        missing here was missing before the backup began."""
        size = os.fstat(self.db_fd).st_size
        for page in range(size // self.page_size + 1, self.page_count + 1):
            if page not in self.frames:
                raise SourceCutShort(
                    f"cannot back up {self.path}: it is cut short (page {page} of "
                    f"{self.page_count}, {self.page_size} bytes each, is not whole in the file, "
                    f"which ends at byte {size}); SQLite would read the missing bytes as zeros, "
                    "so nothing was published",
                    hint=CUT_SHORT_HINT.format(path=self.path),
                )

    def _check_page_count(self) -> None:
        """The handle's page count must be the named file's: from the newest commit frame in
        our snapshot when the WAL has one (the main file's header may be older), else from the
        main file's header, read inside the read transaction (no writer can change it then)."""
        if self.commit_pages:
            named, where = self.commit_pages, "its WAL's last commit"
        else:
            header = os.pread(self.db_fd, 100, 0)
            count = header_count(header)
            if count is None:  # legacy writers leave the header's count unreliable
                count = os.fstat(self.db_fd).st_size // self.page_size
            named, where = count, "its header"
        if named != self.page_count:
            raise PageCountMismatch(
                f"the image of {self.path} would have {self.page_count} pages but {where} "
                f"says {named}: not publishing it",
                hint=PAGE_COUNT_HINT.format(path=self.path),
            )

    def _begin(self) -> None:
        self.db.execute("BEGIN")
        self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()

    def _shm_header(self) -> bytes | None:
        # Descriptors are opened once and closed only after the connection (see close()):
        # closing one would silently release the read lock SQLite holds in the -shm file.
        if self.shm_fd < 0:
            try:
                self.shm_fd = os.open(f"{self.files}-shm", os.O_RDONLY)
            except FileNotFoundError:
                return None
        data = os.pread(self.shm_fd, 2 * SHM_HEADER, 0)
        if len(data) < 2 * SHM_HEADER or data[:SHM_HEADER] != data[SHM_HEADER:]:
            return None  # being written, or not initialised yet
        return data[:SHM_HEADER]

    def _begin_wal(self) -> None:
        header = None
        for attempt in range(ATTEMPTS):
            before = self._shm_header()
            self._begin()
            after = self._shm_header()
            if before is not None and before == after:
                header = after
                break
            self.db.execute("ROLLBACK")
            time.sleep(0.001 * attempt)
        if header is None:
            raise Unreadable("the wal-index header did not settle")
        version, _unused, _change, init, _big_endian, _size, mx_frame = struct.unpack_from(
            "=IIIBBHI", header
        )
        if version != SHM_VERSION or init != 1:
            raise Unreadable(f"unknown wal-index version {version}")
        if mx_frame == 0:
            return  # everything is in the main file
        self.salts = header[32:40]
        try:
            self.wal_fd = os.open(f"{self.files}-wal", os.O_RDONLY)
        except FileNotFoundError as exc:
            raise Unreadable("the WAL file is missing") from exc
        wal_header = os.pread(self.wal_fd, WAL_HEADER, 0)
        if len(wal_header) < WAL_HEADER or wal_header[16:24] != self.salts:
            raise Restarted
        self.wal_page_size = int.from_bytes(wal_header[8:12], "big")
        step = FRAME_HEADER + self.wal_page_size
        for frame in range(mx_frame):
            offset = WAL_HEADER + frame * step
            head = os.pread(self.wal_fd, FRAME_HEADER, offset)
            if len(head) < FRAME_HEADER or head[8:16] != self.salts:
                raise Restarted
            self.frames[int.from_bytes(head[0:4], "big")] = offset + FRAME_HEADER
            commit = int.from_bytes(head[4:8], "big")
            if commit:
                self.commit_pages = commit

    # -- reading -----------------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        if self.next_page > self.page_count:
            self._check_salts()
            return b""
        want = max(1, (n if n and n > 0 else CHUNK_PAGES * self.page_size) // self.page_size)
        first = self.next_page
        last = min(self.page_count, first + want - 1)
        length = (last - first + 1) * self.page_size
        data = bytearray(os.pread(self.db_fd, length, (first - 1) * self.page_size))
        have = len(data)
        if have < length:
            data.extend(bytes(length - have))
        for page in range(first, last + 1) if self.frames or have < length else ():
            at = (page - first) * self.page_size
            offset = self.frames.get(page)
            if offset is not None:
                frame = os.pread(self.wal_fd, self.page_size, offset)
                if len(frame) != self.page_size:
                    raise Restarted
                data[at : at + self.page_size] = frame
            elif at + self.page_size > have:
                # open() found every page whole, and no writer shrinks it under our read lock:
                # something else (a `truncate`) did. Read again: open() then says what it is.
                raise Restarted("the file shrank during the read")
        if first == 1:
            count = header_count(bytes(data[:100]))
            if count is not None and count != self.page_count:
                # A reader on read-lock 0 does not stop a WAL restart: frames read after one
                # are of the new WAL. That is a restart (read again), not a wrong image.
                self._check_salts()
                raise PageCountMismatch(
                    f"the image of {self.path} has {self.page_count} pages but its header says "
                    f"{count}: not publishing it"
                )
        self.next_page = last + 1
        return bytes(data)

    def _check_salts(self) -> None:
        if self.frames:
            header = os.pread(self.wal_fd, WAL_HEADER, 0)
            if header[16:24] != self.salts:
                raise Restarted
