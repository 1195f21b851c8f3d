"""Appraising IMA entries against a runtime policy: allowlist, signatures, excludes.

The first offending entry decides, reported with its index, path and reason.
IMA signatures (ima-sig, EVM xattr v2 "digital signature": type 3, version 2,
hash algorithm, 4-byte key id, big-endian size, signature over the file digest)
are checked against the policy's keys.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from services.policy.ima.log import Entry

_HASHES: dict[int, hashes.HashAlgorithm] = {
    2: hashes.SHA1(),  # noqa: S303 (IMA signatures may use it; the key decides trust)
    4: hashes.SHA256(),
    5: hashes.SHA384(),
    6: hashes.SHA512(),
}
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class Finding:
    reason: str
    message: str
    entry: int
    path: str


@dataclass(frozen=True)
class RuntimePolicy:
    """What may run: digests per path, and/or files signed by these keys."""

    allowlist: Mapping[str, frozenset[str]] = field(default_factory=dict)
    keys: Mapping[bytes, PublicKey] = field(default_factory=dict)  # by 4-byte key id
    excludes: tuple[re.Pattern[str], ...] = ()
    expected_boot_aggregate: frozenset[str] = frozenset()


def key_id(key: PublicKey) -> bytes:
    """IMA's key id: the last 4 bytes of the SHA-1 subject key identifier."""
    from cryptography import x509  # noqa: PLC0415

    return x509.SubjectKeyIdentifier.from_public_key(key).digest[-4:]


def _signature_ok(entry: Entry, keys: Mapping[bytes, PublicKey]) -> str | None:
    """None when the ima-sig signature verifies; else why not."""
    sig = entry.signature
    if len(sig) < 9:
        return "missing IMA signature"
    kind, version, algo, kid, size = struct.unpack(">BBB4sH", sig[:9])
    if kind != 3 or version != 2 or size != len(sig) - 9:
        return "malformed IMA signature header"
    key = keys.get(kid)
    if key is None:
        return f"signed by unknown key {kid.hex()}"
    hash_algo = _HASHES.get(algo)
    if hash_algo is None or hash_algo.digest_size != len(entry.file_digest):
        return "signature hash algorithm does not match the file digest"
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig[9:], entry.file_digest, padding.PKCS1v15(), utils.Prehashed(hash_algo))
        else:
            key.verify(sig[9:], entry.file_digest, ec.ECDSA(utils.Prehashed(hash_algo)))
    except InvalidSignature:
        return "bad IMA signature"
    return None


def appraise_entry(entry: Entry, policy: RuntimePolicy) -> Finding | None:  # noqa: PLR0911
    if entry.path == "boot_aggregate":
        if (
            policy.expected_boot_aggregate
            and entry.file_digest.hex() not in policy.expected_boot_aggregate
        ):
            return Finding(
                "ima.boot_aggregate",
                "boot_aggregate does not match the measured boot",
                entry.index,
                entry.path,
            )
        return None
    if entry.violation:
        return Finding(
            "ima.violation",
            "measurement violation (file changed while open)",
            entry.index,
            entry.path,
        )
    if any(p.match(entry.path) for p in policy.excludes):
        return None
    allowed = policy.allowlist.get(entry.path)
    if allowed is not None and entry.file_digest.hex() in allowed:
        return None
    if policy.keys and entry.template == "ima-sig":
        problem = _signature_ok(entry, policy.keys)
        if problem is None:
            return None
        return Finding("ima.signature", problem, entry.index, entry.path)
    if allowed is not None:
        return Finding(
            "ima.digest", "digest not in the allowlist for this path", entry.index, entry.path
        )
    reason = "ima.signature" if policy.keys else "ima.not_allowlisted"
    message = "missing IMA signature" if policy.keys else "file not in the allowlist"
    return Finding(reason, message, entry.index, entry.path)


def appraise(entries: Iterable[Entry], policy: RuntimePolicy) -> Finding | None:
    """The first offending entry, or None when every entry is acceptable."""
    return next((f for e in entries if (f := appraise_entry(e, policy)) is not None), None)
