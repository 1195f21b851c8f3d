"""Sealing of ACS state at rest: AES-256-GCM under the platform's sealing key.

Every record is bound to its store key as associated data, so a sealed value
copied under another key (say, one service's identity into another's) fails
to open instead of being accepted.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"


class SealingError(Exception):
    """A sealed record is corrupt, was moved, or was sealed by another enclave."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("sealing key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    def derive_key(self, label: str) -> bytes:
        """A 32-byte key for another purpose (e.g. the audit chain), bound to this enclave."""
        return HKDF(hashes.SHA256(), 32, salt=None, info=label.encode()).derive(self._key)

    def seal(self, record_key: str, plaintext: bytes) -> bytes:
        iv = os.urandom(12)
        return _VERSION + iv + self._aead.encrypt(iv, plaintext, record_key.encode())

    def unseal(self, record_key: str, sealed: bytes) -> bytes:
        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise SealingError(f"record {record_key!r} is not a sealed s3ml record")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], record_key.encode())
        except InvalidTag as err:
            raise SealingError(
                f"record {record_key!r} does not open with this enclave's sealing key"
            ) from err
