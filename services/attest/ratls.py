"""RA-TLS: a TLS certificate that carries the quote of the enclave holding its key.

Uses Gramine's conventions so Gramine's RA-TLS tools read it: the raw quote is
the value of extension 1.2.840.113741.1337.6, and the quote's REPORTDATA starts
with SHA-256 of the certificate's DER SubjectPublicKeyInfo. A client verifies
the quote against the pinned root and a pinned measurement, then pins the
certificate itself: no CA is trusted before the enclave is.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.attest.ca import key_pem
from services.attest.platform.base import TeePlatform
from services.attest.quote.collateral import Collateral
from services.attest.quote.verify import QuoteVerifier, VerifiedQuote

RA_TLS_QUOTE_OID = x509.ObjectIdentifier("1.2.840.113741.1337.6")


class RaTlsError(Exception):
    """The certificate carries no quote, or its quote does not bind its key."""


@dataclass(frozen=True)
class RaTlsCredentials:
    cert_pem: bytes
    key_pem: bytes


def spki_digest(public_key: ec.EllipticCurvePublicKey) -> bytes:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).digest()


def create(platform: TeePlatform, dns_names: list[str], now: datetime) -> RaTlsCredentials:
    """A fresh key and a self-signed certificate carrying this enclave's quote over it."""
    key = ec.generate_private_key(ec.SECP256R1())
    quote = platform.quote(spki_digest(key.public_key()) + bytes(32))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in dns_names]), False)
        .add_extension(x509.UnrecognizedExtension(RA_TLS_QUOTE_OID, quote), False)
        .sign(key, hashes.SHA256())
    )
    return RaTlsCredentials(cert.public_bytes(serialization.Encoding.PEM), key_pem(key))


def verify(
    cert_pem: bytes, verifier: QuoteVerifier, collateral: Collateral, now: datetime
) -> VerifiedQuote:
    """Verifies the embedded quote and that it binds the certificate's key.

    The caller still appraises the returned measurement against what it pins.
    """
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_oid(RA_TLS_QUOTE_OID)
    except x509.ExtensionNotFound as err:
        raise RaTlsError("certificate carries no SGX quote (not an RA-TLS certificate)") from err
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise RaTlsError("RA-TLS certificate key must be an EC key")
    raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    verified = verifier.verify(raw, collateral, now)
    if not hmac.compare_digest(verified.report.report_data[:32], spki_digest(public_key)):
        raise RaTlsError("the quote does not bind this certificate's public key")
    return verified
