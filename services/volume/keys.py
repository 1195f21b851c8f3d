"""Key handling: every key a volume uses is derived from one 256-bit volume key.

Derivation is HKDF-SHA256 with the volume id as salt and a purpose label as info,
so a key serves one purpose in one volume only. File keys also take the file's
path, version and a fresh random salt: two writes never share a key, so the
per-chunk nonce can simply be the chunk index.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from services.volume.errors import VolumeError

KEY_BYTES = 32
KEY_CHECK_BYTES = 16


def check_key(key: bytes) -> None:
    if len(key) != KEY_BYTES:
        raise VolumeError(f"a volume key is {KEY_BYTES} bytes, got {len(key)}")


def _derive(key: bytes, volume_id: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    check_key(key)
    return HKDF(hashes.SHA256(), length, volume_id, b"s3ml-volume\0" + info).derive(key)


def manifest_key(key: bytes, volume_id: bytes) -> bytes:
    return _derive(key, volume_id, b"manifest")


def key_check(key: bytes, volume_id: bytes) -> bytes:
    """A public value telling a wrong key from a tampered manifest; reveals nothing of the key."""
    return _derive(key, volume_id, b"key-check", KEY_CHECK_BYTES)


def file_key(key: bytes, volume_id: bytes, path: str, version: int, salt: bytes) -> bytes:
    info = b"file\0" + path.encode() + b"\0" + version.to_bytes(8, "big") + salt
    return _derive(key, volume_id, info)


def blob_name(key: bytes, volume_id: bytes, path: str, salt: bytes) -> str:
    """The on-disk name of a file's blob: a keyed hash, so paths stay hidden."""
    name_key = _derive(key, volume_id, b"names")
    return hmac.new(name_key, path.encode() + b"\0" + salt, hashlib.sha256).hexdigest()


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


def write_key_file(path: Path, key: bytes) -> None:
    """Writes the key as hex, readable by the owner only; refuses to overwrite a key."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key.hex() + "\n")


def read_key_file(path: Path) -> bytes:
    """Reads a key written by `write_key_file`, or 32 raw bytes (as the ACS releases them)."""
    raw = path.read_bytes()
    if len(raw) == KEY_BYTES:
        return raw
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise VolumeError(f"{path}: not a volume key (want {KEY_BYTES} raw bytes or 64 hex digits)")
    return key
