"""Stakeholder signatures: Ed25519, or ECDSA P-256/SHA-256 (DER), nothing else.

The same code signs (the CLI) and verifies (the ACS), so both agree on what
bytes are covered.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from services.attest.errors import InvalidArgumentError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def load_public(der: bytes) -> PublicKey:
    """A stakeholder key from SPKI DER; InvalidArgumentError for any other kind."""
    try:
        key = serialization.load_der_public_key(der)
    except ValueError as err:
        raise InvalidArgumentError("stakeholder key is not a public key") from err
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return key
    raise InvalidArgumentError("stakeholder key must be Ed25519 or ECDSA P-256")


def load_private(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return key
    raise ValueError("stakeholder key must be Ed25519 or ECDSA P-256")


def public_der(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def verifies(public_key_der: bytes, signature: bytes, message: bytes) -> bool:
    """True only for a valid signature by this key; malformed input is simply False."""
    if not signature:
        return False
    key = load_public(public_key_der)
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def list_releases_message(policy: str, nonce: bytes) -> bytes:
    """What ListKeyReleases' signature covers (see stakeholder.proto)."""
    return b"list-releases:" + policy.encode() + b":" + nonce
