"""One file's blob: the file cut into fixed-size chunks, each padded and sealed alone.

Layout: magic `S3MLVB1\\0` (8) ‖ n times (AES-256-GCM(chunk padded to the chunk size) ‖
tag (16)). Every blob of n chunks has the same size, so only the size rounded up to
a chunk shows. The nonce is the chunk index (the key is unique to this blob); the
associated data binds volume id, path, file version, index and whether the chunk
is the last, so chunks cannot be reordered, dropped or moved to another file.
Chunking lets big files stream in constant memory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.volume.errors import MissingBlobError, TamperedError, TruncatedError

MAGIC = b"S3MLVB1\0"
TAG = 16

Progress = Callable[[int], None]


def no_progress(_: int) -> None:
    pass


@dataclass(frozen=True)
class BlobContext:
    """What a blob is bound to; `path` is the volume path, for messages and AAD."""

    key: bytes
    volume_id: bytes
    path: str
    version: int
    chunk_size: int

    def aad(self, index: int, final: bool) -> bytes:
        return (
            MAGIC
            + self.volume_id
            + self.path.encode()
            + b"\0"
            + self.version.to_bytes(8, "big")
            + index.to_bytes(8, "big")
            + (b"\1" if final else b"\0")
        )


def blob_size(chunks: int, chunk_size: int) -> int:
    return len(MAGIC) + chunks * (chunk_size + TAG)


def _read_full(source: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def write(
    dest: Path, ctx: BlobContext, source: BinaryIO, progress: Progress = no_progress
) -> tuple[int, bytes]:
    """Encrypts `source` into `dest` (atomically); returns its plaintext size and tag digest.

    The tag digest (SHA-256 over the chunks' GCM tags) commits the manifest to this
    exact blob while hashing 16 bytes per chunk instead of every byte.
    """
    digest = hashlib.sha256()
    size = 0
    tmp = dest.with_name(dest.name + ".tmp")
    try:
        with tmp.open("wb") as out:
            out.write(MAGIC)
            for plain, sealed in _seal_chunks(ctx, source):
                digest.update(sealed[-TAG:])
                size += len(plain)
                out.write(sealed)
                progress(len(plain))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return size, digest.digest()


def _seal_chunks(ctx: BlobContext, source: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """(plaintext, sealed chunk) pairs; reads one chunk ahead to know which is the last."""
    aead = AESGCM(ctx.key)
    current = _read_full(source, ctx.chunk_size)
    index = 0
    while True:
        following = _read_full(source, ctx.chunk_size) if len(current) == ctx.chunk_size else b""
        final = not following
        padded = current + bytes(ctx.chunk_size - len(current))
        yield current, aead.encrypt(index.to_bytes(12, "big"), padded, ctx.aad(index, final))
        if final:
            return
        current, index = following, index + 1


def read(
    source: Path, ctx: BlobContext, size: int, tags: bytes, progress: Progress = no_progress
) -> Iterator[bytes]:
    """Yields the plaintext chunk by chunk, each authenticated before it is yielded."""
    chunks = max(1, -(-size // ctx.chunk_size))
    expected = blob_size(chunks, ctx.chunk_size)
    try:
        handle = source.open("rb")
    except FileNotFoundError as err:
        raise MissingBlobError(
            f"file '{ctx.path}': its blob is missing (removed, or the volume was rolled back)"
        ) from err
    with handle:
        actual = os.fstat(handle.fileno()).st_size
        if actual != expected:
            raise TruncatedError(
                f"file '{ctx.path}': blob is {actual} bytes, the manifest implies {expected} "
                f"({'truncated' if actual < expected else 'extended'})"
            )
        if handle.read(len(MAGIC)) != MAGIC:
            raise TamperedError(f"file '{ctx.path}': blob has a bad magic")
        aead = AESGCM(ctx.key)
        digest = hashlib.sha256()
        remaining = size
        for index in range(chunks):
            sealed = handle.read(ctx.chunk_size + TAG)
            try:
                padded = aead.decrypt(
                    index.to_bytes(12, "big"), sealed, ctx.aad(index, index == chunks - 1)
                )
            except InvalidTag as err:
                raise TamperedError(
                    f"file '{ctx.path}': chunk {index} of {chunks} failed authentication "
                    "(tampered, reordered, or the blob was swapped with another file's)"
                ) from err
            plain = padded[: min(remaining, ctx.chunk_size)]
            remaining -= len(plain)
            digest.update(sealed[-TAG:])
            progress(len(plain))
            yield plain
    if not hmac.compare_digest(digest.digest(), tags):
        raise TamperedError(f"file '{ctx.path}': tag digest differs from the manifest")
