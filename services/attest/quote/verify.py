"""Verification of SGX DCAP v3 quotes: one code path for hardware and sim quotes.

Order follows Intel's quote verification: parse; PCK chain to the *pinned*
root with CRLs; QE report signed by the PCK key; QE report binds the
attestation key; quote signed by the attestation key; collateral signed under
the same root and current; TCB status from TCB info and QE identity. Only the
pinned root differs between production (Intel SGX Root CA) and sim.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from services.attest.quote import ecdsa, layout
from services.attest.quote.chain import check_revoked, load_crl, load_pem_chain, verify_chain
from services.attest.quote.collateral import Collateral, worst
from services.attest.quote.errors import (
    CollateralError,
    QuoteChainError,
    QuoteFormatError,
    QuoteSignatureError,
)
from services.attest.quote.pck_extension import PlatformTcb, platform_tcb


@dataclass(frozen=True)
class VerifiedQuote:
    """A quote whose signatures, chain and collateral checked out."""

    report: layout.ReportBody
    tcb_status: str
    pck_subject: str


@dataclass(frozen=True)
class _CheckedPck:
    """A PCK chain that verified, with what the quote checks need from it."""

    public_key: ec.EllipticCurvePublicKey
    tcb: PlatformTcb
    subject: str
    valid_from: datetime
    valid_until: datetime


@dataclass(frozen=True)
class _CheckedCollateral:
    tcb_info: dict[str, Any]
    qe_identity: dict[str, Any]
    valid_from: datetime
    valid_until: datetime


class _Memo:
    """Successful chain and collateral checks, reused while still valid.

    Only successes are kept, and each only inside its validity window, so a
    cached entry never accepts what a fresh check would refuse.
    """

    def __init__(self, capacity: int = 256) -> None:
        self._entries: dict[bytes, Any] = {}
        self._capacity = capacity
        self._lock = threading.Lock()

    def get(self, key: bytes, now: datetime) -> Any:
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and entry.valid_from <= now <= entry.valid_until:
            return entry
        return None

    def put(self, key: bytes, entry: Any) -> None:
        with self._lock:
            if len(self._entries) >= self._capacity:
                self._entries.clear()
            self._entries[key] = entry


def _digest(*parts: bytes | str) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        digest.update(len(raw).to_bytes(8, "big") + raw)
    return digest.digest()


class QuoteVerifier:
    """Verifies quotes against one pinned root CA certificate."""

    def __init__(self, pinned_root_pem: bytes) -> None:
        self._root = x509.load_pem_x509_certificate(pinned_root_pem)
        self._memo = _Memo()

    @property
    def root_subject(self) -> str:
        return self._root.subject.rfc4514_string()

    def verify(self, raw_quote: bytes, collateral: Collateral, now: datetime) -> VerifiedQuote:
        quote = layout.parse(raw_quote)
        if quote.cert_data_type != layout.CERT_DATA_PCK_CHAIN:
            raise QuoteFormatError(
                f"certification data type {quote.cert_data_type}, expected 5 (PCK chain)"
            )
        pck = self._pck(quote.cert_data, collateral, now)
        _verify_qe_binding(quote, pck.public_key)
        attestation_key = ecdsa.load_raw_public_key(quote.attestation_key)
        if not ecdsa.verify_raw(attestation_key, quote.signature, quote.signed_bytes):
            raise QuoteSignatureError("quote signature does not verify under the attestation key")
        checked = self._collateral(collateral, now)
        status = worst(
            _platform_status(checked.tcb_info, pck.tcb),
            _qe_status(checked.qe_identity, quote.qe_report),
        )
        return VerifiedQuote(quote.report, status, pck.subject)

    def _pck(self, cert_data: bytes, collateral: Collateral, now: datetime) -> _CheckedPck:
        key = _digest(b"pck", cert_data, collateral.root_ca_crl, collateral.pck_crl)
        cached: _CheckedPck | None = self._memo.get(key, now)
        if cached is not None:
            return cached
        certs = load_pem_chain(cert_data.rstrip(b"\0"), "PCK certificate chain")
        leaf = verify_chain(certs, self._root, now, "PCK certificate chain")
        root_crl = load_crl(collateral.root_ca_crl, self._root, now, "root CA CRL")
        pck_crl = load_crl(collateral.pck_crl, certs[1], now, "PCK CRL")
        check_revoked(certs, root_crl.revoked | pck_crl.revoked, "PCK certificate chain")
        public_key = leaf.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise QuoteChainError("PCK certificate key is not an EC key")
        checked = _CheckedPck(
            public_key,
            platform_tcb(leaf),
            leaf.subject.rfc4514_string(),
            max(c.not_valid_before_utc for c in certs),
            min(
                [c.not_valid_after_utc for c in certs] + [root_crl.next_update, pck_crl.next_update]
            ),
        )
        self._memo.put(key, checked)
        return checked

    def _collateral(self, collateral: Collateral, now: datetime) -> _CheckedCollateral:
        key = _digest(
            b"collateral",
            collateral.tcb_info,
            collateral.tcb_info_signature,
            collateral.tcb_info_issuer_chain,
            collateral.qe_identity,
            collateral.qe_identity_signature,
            collateral.qe_identity_issuer_chain,
        )
        cached: _CheckedCollateral | None = self._memo.get(key, now)
        if cached is not None:
            return cached
        tcb_info, tcb_window = self._signed_json(
            collateral.tcb_info,
            collateral.tcb_info_signature,
            collateral.tcb_info_issuer_chain,
            now,
            "TCB info",
        )
        qe_identity, qe_window = self._signed_json(
            collateral.qe_identity,
            collateral.qe_identity_signature,
            collateral.qe_identity_issuer_chain,
            now,
            "QE identity",
        )
        checked = _CheckedCollateral(
            tcb_info,
            qe_identity,
            max(tcb_window[0], qe_window[0]),
            min(tcb_window[1], qe_window[1]),
        )
        self._memo.put(key, checked)
        return checked

    def _signed_json(
        self, body: str, signature: bytes, chain_pem: str, now: datetime, what: str
    ) -> tuple[dict[str, Any], tuple[datetime, datetime]]:
        try:
            certs = load_pem_chain(chain_pem, f"{what} issuer chain")
            signer = verify_chain(certs, self._root, now, f"{what} issuer chain")
        except QuoteChainError as err:
            raise CollateralError(str(err)) from err
        key = signer.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not ecdsa.verify_raw(
            key, signature, body.encode()
        ):
            raise CollateralError(f"{what} signature does not verify")
        try:
            parsed: dict[str, Any] = json.loads(body)
            issued = datetime.fromisoformat(parsed["issueDate"])
            next_update = datetime.fromisoformat(parsed["nextUpdate"])
        except (ValueError, KeyError, TypeError) as err:
            raise CollateralError(f"{what} is not valid collateral JSON") from err
        if next_update < now:
            raise CollateralError(f"{what} expired at {next_update.isoformat()}; refresh it")
        valid_from = max([issued] + [c.not_valid_before_utc for c in certs])
        valid_until = min([next_update] + [c.not_valid_after_utc for c in certs])
        return parsed, (valid_from, valid_until)


def _verify_qe_binding(quote: layout.Quote, pck_key: Any) -> None:
    if not ecdsa.verify_raw(pck_key, quote.qe_report_signature, quote.qe_report.pack()):
        raise QuoteSignatureError("QE report signature does not verify under the PCK key")
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
    if not hmac.compare_digest(quote.qe_report.report_data, expected):
        raise QuoteSignatureError("QE report does not certify this attestation key")


def _platform_status(tcb_info: dict[str, Any], platform: PlatformTcb) -> str:
    """First TCB level (newest first) that the PCK certificate's SVNs reach."""
    if str(tcb_info.get("fmspc", "")).lower() != platform.fmspc.hex():
        raise CollateralError(
            f"TCB info is for FMSPC {tcb_info.get('fmspc')}, the PCK certificate "
            f"says {platform.fmspc.hex()}; fetch the TCB info for this platform"
        )
    for level in tcb_info.get("tcbLevels", []):
        tcb = level["tcb"]
        needed = [c["svn"] for c in tcb["sgxtcbcomponents"]]
        reached = all(h >= n for h, n in zip(platform.components, needed, strict=True))
        if reached and platform.pce_svn >= tcb["pcesvn"]:
            return str(level["tcbStatus"])
    return "Revoked"


def _qe_status(qe_identity: dict[str, Any], qe_report: layout.ReportBody) -> str:
    if qe_report.mr_signer.hex() != str(qe_identity.get("mrsigner", "")).lower():
        raise CollateralError("QE report MRSIGNER does not match the QE identity")
    if qe_report.isv_prod_id != qe_identity.get("isvprodid"):
        raise CollateralError("QE report ISVPRODID does not match the QE identity")
    try:
        misc = int(qe_identity["miscselect"], 16)
        misc_mask = int(qe_identity["miscselectMask"], 16)
        attributes = bytes.fromhex(qe_identity["attributes"])
        attributes_mask = bytes.fromhex(qe_identity["attributesMask"])
    except (KeyError, ValueError, TypeError) as err:
        raise CollateralError("QE identity lacks miscselect/attributes and their masks") from err
    if qe_report.misc_select & misc_mask != misc & misc_mask:
        raise CollateralError("QE report MISCSELECT does not match the QE identity")
    masked = bytes(a & m for a, m in zip(qe_report.attributes, attributes_mask, strict=True))
    if masked != bytes(a & m for a, m in zip(attributes, attributes_mask, strict=True)):
        raise CollateralError("QE report ATTRIBUTES do not match the QE identity")
    for level in qe_identity.get("tcbLevels", []):
        if qe_report.isv_svn >= level["tcb"]["isvsvn"]:
            return str(level["tcbStatus"])
    return "Revoked"
