"""P-256 keys and signatures in the raw forms SGX quotes use (x||y, r||s)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

_COORD = 32


def raw_public_key(key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = key.public_numbers()
    return numbers.x.to_bytes(_COORD, "big") + numbers.y.to_bytes(_COORD, "big")


def load_raw_public_key(raw: bytes) -> ec.EllipticCurvePublicKey:
    """Raises ValueError when `raw` is not a point on P-256."""
    if len(raw) != 2 * _COORD:
        raise ValueError(f"raw P-256 key must be 64 bytes, got {len(raw)}")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + raw)


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(_COORD, "big") + s.to_bytes(_COORD, "big")


def verify_raw(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """True when `signature` (r||s) over `data` verifies under `key`."""
    if len(signature) != 2 * _COORD:
        return False
    r = int.from_bytes(signature[:_COORD], "big")
    s = int.from_bytes(signature[_COORD:], "big")
    try:
        key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
