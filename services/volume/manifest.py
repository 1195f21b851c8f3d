"""The manifest: the authenticated, encrypted list of what a volume holds.

On disk (`<volume>/manifest`): magic `S3MLVM1\\0` (8) ‖ volume id (16) ‖ key check
(16) ‖ nonce (12) ‖ AES-256-GCM(JSON padded to a multiple of 4 KiB), with the
first 40 bytes as associated data. The JSON lists every path with its size,
file version, key salt and a digest of its chunk tags, plus the volume version, which
grows by one with each commit. Since each file's key and blob name derive from
its manifest entry, a blob that is removed, swapped, rolled back or altered no
longer matches the manifest; the manifest itself can only be rolled back as a
whole, which the reader's `min_version` catches.
"""

from __future__ import annotations

import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.volume import keys
from services.volume.errors import (
    InvalidPathError,
    NotAVolumeError,
    TamperedError,
    WrongKeyError,
)

MAGIC = b"S3MLVM1\0"
FORMAT = 1
VOLUME_ID_BYTES = 16
_NONCE = 12
_HEADER = len(MAGIC) + VOLUME_ID_BYTES + keys.KEY_CHECK_BYTES
_PAD = 4096
DEFAULT_CHUNK = 64 * 1024


def check_path(path: str) -> str:
    """The canonical form of a volume path (relative POSIX), or InvalidPathError."""
    parts = path.split("/")
    if not path or "\0" in path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise InvalidPathError(f"'{path[:200]}' is not a relative path without '.', '..' or '//'")
    return str(PurePosixPath(path))


@dataclass(frozen=True)
class FileEntry:
    """One file: the salt makes its key and blob name unique to this write."""

    path: str
    size: int
    version: int
    salt: bytes
    tags: bytes  # SHA-256 over the blob's chunk tags (see blob.write)


@dataclass(frozen=True)
class Manifest:
    volume_id: bytes
    version: int
    chunk_size: int = DEFAULT_CHUNK
    files: dict[str, FileEntry] = field(default_factory=dict)

    def chunks(self, entry: FileEntry) -> int:
        """Chunk count of a file; an empty file still has one (padded) chunk."""
        return max(1, -(-entry.size // self.chunk_size))

    def to_json(self) -> bytes:
        files = [
            {
                "path": e.path,
                "size": e.size,
                "version": e.version,
                "salt": e.salt.hex(),
                "tags": e.tags.hex(),
            }
            for e in sorted(self.files.values(), key=lambda e: e.path)
        ]
        body = {
            "format": FORMAT,
            "volume_id": self.volume_id.hex(),
            "version": self.version,
            "chunk_size": self.chunk_size,
            "files": files,
        }
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        body = json.loads(raw)
        if body.get("format") != FORMAT:
            raise NotAVolumeError(f"manifest format {body.get('format')} is not {FORMAT}")
        files = {
            f["path"]: FileEntry(
                f["path"],
                int(f["size"]),
                int(f["version"]),
                bytes.fromhex(f["salt"]),
                bytes.fromhex(f["tags"]),
            )
            for f in body["files"]
        }
        return cls(
            bytes.fromhex(body["volume_id"]), int(body["version"]), int(body["chunk_size"]), files
        )


def seal(manifest: Manifest, key: bytes) -> bytes:
    """The manifest file's bytes; the plaintext is padded so its size hides the file count."""
    body = manifest.to_json()
    length = len(body).to_bytes(4, "big")
    padded = length + body
    padded += bytes(-len(padded) % _PAD)
    header = MAGIC + manifest.volume_id + keys.key_check(key, manifest.volume_id)
    nonce = os.urandom(_NONCE)
    aead = AESGCM(keys.manifest_key(key, manifest.volume_id))
    return header + nonce + aead.encrypt(nonce, padded, header)


def volume_id_of(blob: bytes) -> bytes:
    if len(blob) < _HEADER + _NONCE + 16 or not blob.startswith(MAGIC):
        raise NotAVolumeError("manifest: not an s3ml volume manifest (bad magic or truncated)")
    return blob[len(MAGIC) : len(MAGIC) + VOLUME_ID_BYTES]


def unseal(blob: bytes, key: bytes) -> Manifest:
    """Decrypts and checks a manifest; tells a wrong key apart from tampering."""
    volume_id = volume_id_of(blob)
    header = blob[:_HEADER]
    if not hmac.compare_digest(header[-keys.KEY_CHECK_BYTES :], keys.key_check(key, volume_id)):
        raise WrongKeyError("the key is not this volume's key (key check value differs)")
    nonce = blob[_HEADER : _HEADER + _NONCE]
    try:
        padded = AESGCM(keys.manifest_key(key, volume_id)).decrypt(
            nonce, blob[_HEADER + _NONCE :], header
        )
    except InvalidTag as err:
        raise TamperedError("manifest: authentication failed (tampered or truncated)") from err
    length = int.from_bytes(padded[:4], "big")
    manifest = Manifest.from_json(padded[4 : 4 + length])
    if manifest.volume_id != volume_id:
        raise TamperedError("manifest: volume id inside differs from the header")
    return manifest
