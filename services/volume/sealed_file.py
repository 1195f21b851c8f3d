"""One encrypted file: AES-256-GCM with its identity bound as associated data.

Layout: magic `S3MLSF1\\0` (8) ‖ IV (12) ‖ ciphertext ‖ tag (16). The associated
data names what the file is (for a model: its name and version), so a file
renamed or swapped for another model's fails authentication instead of
loading the wrong model.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"S3MLSF1\0"
_IV = 12
_TAG = 16


class SealedFileError(Exception):
    """The file is not a sealed s3ml file, or it was altered, or the key/identity is wrong."""


def model_aad(name: str, version: str) -> bytes:
    return b"s3ml-model\0" + name.encode() + b"\0" + version.encode()


def seal(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    iv = os.urandom(_IV)
    return MAGIC + iv + AESGCM(key).encrypt(iv, plaintext, aad)


def open_sealed(key: bytes, blob: bytes, aad: bytes, what: str) -> bytes:
    if len(blob) < len(MAGIC) + _IV + _TAG or not blob.startswith(MAGIC):
        raise SealedFileError(f"{what}: not a sealed s3ml file (bad magic or truncated)")
    iv = blob[len(MAGIC) : len(MAGIC) + _IV]
    try:
        return AESGCM(key).decrypt(iv, blob[len(MAGIC) + _IV :], aad)
    except InvalidTag as err:
        raise SealedFileError(
            f"{what}: authentication failed "
            "(tampered, truncated, wrong key or wrong model identity)"
        ) from err


def write_sealed(path: Path, key: bytes, plaintext: bytes, aad: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(seal(key, plaintext, aad))
    os.replace(tmp, path)
