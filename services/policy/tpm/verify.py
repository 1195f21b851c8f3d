"""Verifier-side TPM checks: EK chain, credential activation, quote, PCR digest.

Each failure raises TpmCheckError with a machine-readable reason (`ek.chain`,
`ak.activation`, `quote.signature`, `quote.nonce`, `quote.pcr_digest`,
`quote.clock`) and a message; nothing is trusted before every check passed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from tpm2_pytss import TPM2_ALG, TPM2_ST, TPM2B_NAME, TPM2B_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE
from tpm2_pytss.utils import make_credential

TPM_GENERATED = 0xFF544347
_BANK_IDS = {4: "sha1", 11: "sha256", 12: "sha384"}


class TpmCheckError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class QuoteInfo:
    clock: int
    reset_count: int
    restart_count: int


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_ek_chain(ek_der: bytes, manufacturer_pems: list[bytes]) -> x509.Certificate:
    """The EK certificate must chain, through the given CAs, to a self-signed one of them.

    Several manufacturers' CAs may share a subject name: every candidate is tried.
    """
    try:
        cert = x509.load_der_x509_certificate(ek_der)
    except ValueError as err:
        raise TpmCheckError("ek.chain", "EK certificate is not DER") from err
    cas = [x509.load_pem_x509_certificate(p) for p in manufacturer_pems]
    current = cert
    for _ in range(len(cas) + 1):
        named = [ca for ca in cas if ca.subject == current.issuer]
        if not named:
            issuer = current.issuer.rfc4514_string()
            raise TpmCheckError("ek.chain", f"EK issuer '{issuer}' is not a manufacturer CA")
        issuer_ca = next((ca for ca in named if _issued_by(current, ca)), None)
        if issuer_ca is None:
            raise TpmCheckError("ek.chain", "EK certificate signature does not verify")
        if issuer_ca.subject == issuer_ca.issuer:
            return cert
        current = issuer_ca
    raise TpmCheckError("ek.chain", "EK chain too long")


def make_challenge(ek_public: bytes, ak_name: bytes) -> tuple[bytes, bytes, bytes]:
    """(credential blob, encrypted secret, expected secret) for TPM2_ActivateCredential."""
    secret = os.urandom(32)
    public = TPM2B_PUBLIC.unmarshal(ek_public)[0]
    name = TPM2B_NAME.unmarshal(ak_name)[0]
    blob, encrypted = make_credential(public, secret, name)
    return bytes(blob.marshal()), bytes(encrypted.marshal()), secret


def check_activation(expected: bytes, activated: bytes) -> None:
    if not hmac.compare_digest(expected, activated):
        raise TpmCheckError(
            "ak.activation", "the AK is not bound to this EK (activation secret differs)"
        )


def ak_key(ak_public: bytes) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """The AK as a `cryptography` key: ECDSA P-256 (ours) or RSA (common on real hosts)."""
    area = TPM2B_PUBLIC.unmarshal(ak_public)[0].publicArea
    if int(area.type) == int(TPM2_ALG.RSA):
        exponent = int(area.parameters.rsaDetail.exponent) or 65537
        modulus = int.from_bytes(bytes(area.unique.rsa), "big")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    point = area.unique.ecc
    return ec.EllipticCurvePublicNumbers(
        int.from_bytes(bytes(point.x), "big"), int.from_bytes(bytes(point.y), "big"), ec.SECP256R1()
    ).public_key()


def _check_signature(ak_public: bytes, attest: bytes, signature: bytes) -> None:
    sig = TPMT_SIGNATURE.unmarshal(signature)[0]
    key = ak_key(ak_public)
    if isinstance(key, rsa.RSAPublicKey):
        if int(sig.sigAlg) != int(TPM2_ALG.RSASSA):
            raise ValueError("only RSASSA signatures from RSA AKs")
        key.verify(bytes(sig.signature.rsassa.sig), attest, padding.PKCS1v15(), hashes.SHA256())
        return
    r = int.from_bytes(bytes(sig.signature.ecdsa.signatureR), "big")
    s = int.from_bytes(bytes(sig.signature.ecdsa.signatureS), "big")
    key.verify(encode_dss_signature(r, s), attest, ec.ECDSA(hashes.SHA256()))


def verify_quote(
    ak_public: bytes,
    attest: bytes,
    signature: bytes,
    nonce: bytes,
    pcrs: dict[tuple[str, int], bytes],
) -> QuoteInfo:
    try:
        _check_signature(ak_public, attest, signature)
    except (InvalidSignature, ValueError, TypeError) as err:
        raise TpmCheckError(
            "quote.signature", "quote signature does not verify under the AK"
        ) from err
    info = TPMS_ATTEST.unmarshal(attest)[0]
    if int(info.magic) != TPM_GENERATED or int(info.type) != int(TPM2_ST.ATTEST_QUOTE):
        raise TpmCheckError("quote.signature", "not a TPM-generated quote")
    if not hmac.compare_digest(bytes(info.extraData), nonce):
        raise TpmCheckError("quote.nonce", "quote does not carry the verifier's nonce (replayed?)")
    quote = info.attested.quote
    digest = hashlib.sha256()
    for selection in quote.pcrSelect:
        bank = _BANK_IDS.get(int(selection.hash))
        bitmap = bytes(selection.pcrSelect)[: selection.sizeofSelect]
        for index in range(len(bitmap) * 8):
            if bitmap[index // 8] >> (index % 8) & 1:
                value = pcrs.get((str(bank), index))
                if value is None:
                    raise TpmCheckError(
                        "quote.pcr_digest", f"PCR {bank}:{index} quoted but not reported"
                    )
                digest.update(value)
    if not hmac.compare_digest(digest.digest(), bytes(quote.pcrDigest)):
        raise TpmCheckError(
            "quote.pcr_digest", "reported PCR values do not match the quoted digest"
        )
    clock = info.clockInfo
    return QuoteInfo(int(clock.clock), int(clock.resetCount), int(clock.restartCount))


def check_monotonic(previous: QuoteInfo | None, current: QuoteInfo) -> None:
    """Clock and reset counters never go back on one TPM (a replayed or forged quote would)."""
    if previous is None:
        return
    if current.reset_count < previous.reset_count or (
        current.reset_count == previous.reset_count and current.clock < previous.clock
    ):
        raise TpmCheckError("quote.clock", "TPM clock or reset count went backwards")
