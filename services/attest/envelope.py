"""Encrypting provisioning payloads to an attested instance's own P-256 key.

The instance proved (REPORTDATA) that it holds the private half of the key, so
only that enclave can open the envelope, whatever carries it.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"s3ml provisioning v1"


class EnvelopeError(Exception):
    """The envelope cannot be opened with this key and context."""


def load_instance_key(der: bytes) -> ec.EllipticCurvePublicKey:
    """Parses an instance key; raises ValueError unless it is a P-256 SPKI."""
    key = serialization.load_der_public_key(der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("instance key must be a P-256 (secp256r1) public key")
    return key


def _kek(shared: bytes, context: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=context, info=_INFO).derive(shared)


def seal_to(
    recipient: ec.EllipticCurvePublicKey, plaintext: bytes, context: bytes
) -> tuple[bytes, bytes, bytes]:
    """Returns (ephemeral SPKI DER, iv, ciphertext)."""
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    key = _kek(ephemeral.exchange(ec.ECDH(), recipient), context)
    iv = os.urandom(12)
    ciphertext = AESGCM(key).encrypt(iv, plaintext, context)
    spki = ephemeral.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return spki, iv, ciphertext


def open_with(
    private: ec.EllipticCurvePrivateKey,
    ephemeral_der: bytes,
    iv: bytes,
    ciphertext: bytes,
    context: bytes,
) -> bytes:
    try:
        ephemeral = load_instance_key(ephemeral_der)
        key = _kek(private.exchange(ec.ECDH(), ephemeral), context)
        return AESGCM(key).decrypt(iv, ciphertext, context)
    except (ValueError, InvalidTag) as err:
        raise EnvelopeError("provisioning envelope does not open with this instance key") from err
