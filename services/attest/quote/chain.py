"""X.509 chain checks shared by the PCK chain and the collateral signing chain."""

from __future__ import annotations

import hmac
import itertools
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from services.attest.quote.errors import QuoteChainError


def load_pem_chain(pem: bytes | str, what: str) -> list[x509.Certificate]:
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise QuoteChainError(f"{what}: not a PEM certificate chain ({err})") from err
    if len(certs) < 2:
        raise QuoteChainError(f"{what}: needs a leaf and its issuers, got {len(certs)} cert(s)")
    return certs


def verify_chain(
    certs: list[x509.Certificate],
    pinned_root: x509.Certificate,
    now: datetime,
    what: str,
) -> x509.Certificate:
    """Checks `certs` (leaf first) up to the pinned root; returns the leaf.

    The chain's last certificate must be the pinned root byte for byte: a chain
    to any other root, a simulated one included, is refused.
    """
    presented_root = certs[-1].public_bytes(Encoding.DER)
    if not hmac.compare_digest(presented_root, pinned_root.public_bytes(Encoding.DER)):
        raise QuoteChainError(
            f"{what}: chain ends at '{certs[-1].subject.rfc4514_string()}', "
            "not at the pinned root CA"
        )
    for cert, issuer in itertools.pairwise(certs):
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature) as err:
            raise QuoteChainError(
                f"{what}: '{cert.subject.rfc4514_string()}' is not signed by its issuer"
            ) from err
    for cert in certs:
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise QuoteChainError(
                f"{what}: '{cert.subject.rfc4514_string()}' is outside its validity period"
            )
    return certs[0]


def check_revoked(certs: list[x509.Certificate], revoked: frozenset[int], what: str) -> None:
    """Refuses a chain any of whose non-root certificates is on a CRL."""
    for cert in certs[:-1]:
        if cert.serial_number in revoked:
            raise QuoteChainError(f"{what}: '{cert.subject.rfc4514_string()}' is revoked")


@dataclass(frozen=True)
class CheckedCrl:
    revoked: frozenset[int]
    next_update: datetime


def load_crl(der: bytes, issuer: x509.Certificate, now: datetime, what: str) -> CheckedCrl:
    """Revoked serials of a CRL that `issuer` signed and that is still current."""
    try:
        crl = x509.load_der_x509_crl(der)
    except ValueError as err:
        raise QuoteChainError(f"{what}: not a DER CRL") from err
    if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
        raise QuoteChainError(f"{what}: CRL not signed by '{issuer.subject.rfc4514_string()}'")
    next_update = crl.next_update_utc
    if next_update is None:
        raise QuoteChainError(f"{what}: CRL has no nextUpdate")
    if next_update < now:
        raise QuoteChainError(f"{what}: CRL expired at {next_update.isoformat()}")
    return CheckedCrl(frozenset(entry.serial_number for entry in crl), next_update)
