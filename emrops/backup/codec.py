"""The byte pipelines: source -> zstd (multi-threaded) -> [age] -> SHA-256 -> store, and back.

One pass each way, in bounded memory. Hashing is of the stored bytes, so verify can check a
backup without the identity or a decompressor.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import zstandard

from emrops.backup import crypto

CHUNK = 1 << 20
Progress = Callable[[str, int, int | None], None]


def _noop(_phase: str, _done: int, _total: int | None) -> None:
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
        progress: Progress = _noop,
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
    progress: Progress = _noop,
    phase: str = "compress",
    total: int | None = None,
) -> Encoded:
    """Compress (and encrypt) ``source`` into ``sink`` in one pass."""
    threads = max(1, (os.cpu_count() or 1))
    compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
    counted = HashingReader(source, progress, phase, total, digest=False)
    out = HashingWriter(sink)
    reader: Any = counted  # duck-typed: read() is all zstd needs
    if recipients:
        with compressor.stream_reader(reader, read_size=CHUNK, closefd=False) as compressed:
            crypto.encrypt_stream(compressed, out, recipients)  # type: ignore[arg-type]
    else:
        sink_io: Any = out
        compressor.copy_stream(reader, sink_io, read_size=CHUNK, write_size=CHUNK)
    return Encoded(out.size, out.sha.hexdigest(), counted.size)


def decode(source: HashingReader, sink: IO[bytes], *, identities: list[Any] | None) -> None:
    """Decrypt (if ``identities``) and decompress ``source`` into ``sink``.

    Raises pyrage.DecryptError or zstandard.ZstdError on damaged input.
    """
    decompressor = zstandard.ZstdDecompressor()
    with decompressor.stream_writer(sink, write_size=CHUNK, closefd=False) as plain:
        if identities:
            crypto.decrypt_stream(source, plain, identities)  # type: ignore[arg-type]
        else:
            while chunk := source.read(CHUNK):
                plain.write(chunk)
        plain.flush()
