"""The byte pipelines: source -> zstd (multi-threaded) -> [age] -> SHA-256 -> store, and back.

One pass each way, in bounded memory. Hashing is of the stored bytes, so verify can check a
backup without the identity or a decompressor.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import zstandard

from emrops.backup import crypto
from emrops.machine import MAX_ZSTD_THREADS, usable_cores

CHUNK = 1 << 20
Progress = Callable[[str, int, int | None], None]
# The manifest digest travels inside an encrypted stream as a zstd skippable frame after the
# compressed image: zstd (the CLI and the library) skips it, age authenticates it.
SEAL_MAGIC = 0x184D2A5E
SEAL_TAG = b"EMROPS-SEAL1"
SEAL_FRAME_SIZE = 8 + len(SEAL_TAG) + 32


def no_progress(_phase: str, _done: int, _total: int | None) -> None:
    return None


class HashingWriter:
    """Counts and hashes what passes through to ``sink``."""

    def __init__(self, sink: IO[bytes]):
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += len(view)
        self.sink.write(view)
        return len(view)

    def flush(self) -> None:
        pass


class HashingReader:
    """Counts and hashes what is read from ``source``; reports progress."""

    def __init__(
        self,
        source: IO[bytes],
        progress: Progress = no_progress,
        phase: str = "",
        total: int | None = None,
        digest: bool = True,
    ):
        self.source = source
        self.digest = digest
        self.sha = hashlib.sha256()
        self.size = 0
        self.progress = progress
        self.phase = phase
        self.total = total

    def read(self, n: int = -1) -> bytes:
        data = self.source.read(n if n and n > 0 else CHUNK)
        if self.digest:
            self.sha.update(data)
        self.size += len(data)
        if data:
            self.progress(self.phase, self.size, self.total)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class Captured:
    """A stream handed to pyrage that keeps the first exception its reads or writes raise.

    pyrage turns any exception of the streams it reads or writes into its own EncryptError,
    DecryptError or OSError and drops the original, so a WAL restart under an encrypted
    snapshot, a full disk or a zstd error would look like an encryption failure; the caller
    raises the kept original instead (:func:`reraise_captured`)."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.error: BaseException | None = None

    def _keep(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc

    def read(self, n: int = -1) -> bytes:
        try:
            data: bytes = self.inner.read(n)
        except BaseException as exc:
            self._keep(exc)
            raise
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        try:
            self.inner.write(data)
        except BaseException as exc:
            self._keep(exc)
            raise
        return len(data)

    def flush(self) -> None:
        try:
            flush = getattr(self.inner, "flush", None)
            if flush is not None:
                flush()
        except BaseException as exc:
            self._keep(exc)
            raise


def reraise_captured(*streams: Captured) -> None:
    """Raise the first original exception one of ``streams`` saw (if any)."""
    for stream in streams:
        if stream.error is not None:
            raise stream.error


class _Trailer:
    """A read stream that yields ``source`` and then the bytes ``trailer()`` gives at its end."""

    def __init__(self, source: Any, trailer: Callable[[], bytes]):
        self.source = source
        self.trailer = trailer
        self.tail: bytes | None = None

    def read(self, n: int = -1) -> bytes:
        if self.tail is None:
            data: bytes = self.source.read(n)
            if data:
                return data
            self.tail = self.trailer()
        data, self.tail = (
            self.tail[: n if n > 0 else None],
            self.tail[n if n > 0 else len(self.tail) :],
        )
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def seal_frame(digest: bytes) -> bytes:
    """The skippable frame carrying a 32-byte manifest digest."""
    assert len(digest) == 32
    payload = SEAL_TAG + digest
    return struct.pack("<II", SEAL_MAGIC, len(payload)) + payload


def parse_seal_frame(tail: bytes) -> bytes | None:
    """The digest of a seal frame at the end of ``tail``, or None when there is none."""
    frame = tail[-SEAL_FRAME_SIZE:]
    if len(frame) != SEAL_FRAME_SIZE:
        return None
    magic, size = struct.unpack("<II", frame[:8])
    if magic != SEAL_MAGIC or size != SEAL_FRAME_SIZE - 8 or not frame[8:].startswith(SEAL_TAG):
        return None
    return frame[8 + len(SEAL_TAG) :]


class _TailKeeper:
    """Passes writes to ``sink`` and keeps the last bytes written (where the seal frame is)."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.tail = b""

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.tail = (self.tail + chunk)[-SEAL_FRAME_SIZE:]
        self.sink.write(chunk)
        return len(chunk)

    def flush(self) -> None:
        self.sink.flush()


@dataclass
class Encoded:
    size: int
    sha256: str
    raw_size: int


def encode(
    source: IO[bytes],
    sink: IO[bytes],
    *,
    level: int,
    recipients: list[Any] | None,
    progress: Progress = no_progress,
    phase: str = "compress",
    total: int | None = None,
    seal: Callable[[], bytes] | None = None,
) -> Encoded:
    """Compress (and encrypt) ``source`` into ``sink`` in one pass.

    With ``recipients``, ``seal()`` (called once the source is read) gives a 32-byte digest
    that is appended inside the encrypted stream as a skippable frame. Exceptions of the
    source and the sink (walimage.Restarted, a full disk) come out as they were raised."""
    threads = min(usable_cores(), MAX_ZSTD_THREADS)
    compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    counted = HashingReader(source, progress, phase, total, digest=False)
    out = HashingWriter(sink)
    reader: Any = counted  # duck-typed: read() is all zstd needs
    if recipients:
        with compressor.stream_reader(reader, read_size=CHUNK, closefd=False) as compressed:
            plain: Any = compressed
            if seal is not None:
                plain = _Trailer(compressed, lambda: seal_frame(seal()))
            src, dst = Captured(plain), Captured(out)
            try:
                crypto.encrypt_stream(src, dst, recipients)  # type: ignore[arg-type]
            except Exception:
                reraise_captured(src, dst)
                raise
    else:
        sink_io: Any = out
        compressor.copy_stream(reader, sink_io, read_size=CHUNK, write_size=CHUNK)
    return Encoded(out.size, out.sha.hexdigest(), counted.size)


def decode(source: HashingReader, sink: IO[bytes], *, identities: list[Any] | None) -> bytes | None:
    """Decrypt (if ``identities``) and decompress ``source`` into ``sink``.

    Returns the digest of the seal frame found at the end of a decrypted stream (None when
    there is none, or nothing was decrypted). Raises pyrage.DecryptError, crypto's
    Damaged or zstandard.ZstdError on damaged input; the exceptions of the source and the
    sink come out as they were raised.
    """
    decompressor = zstandard.ZstdDecompressor()
    with decompressor.stream_writer(sink, write_size=CHUNK, closefd=False) as plain:
        if identities:
            keeper = _TailKeeper(plain)
            src, dst = Captured(source), Captured(keeper)
            try:
                crypto.decrypt_stream(src, dst, identities)  # type: ignore[arg-type]
            except Exception:
                reraise_captured(src, dst)
                raise
            plain.flush()
            return parse_seal_frame(keeper.tail)
        while chunk := source.read(CHUNK):
            plain.write(chunk)
        plain.flush()
    return None
