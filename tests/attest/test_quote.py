"""DCAP v3 quote layout and verification, on real bytes from the sim platform."""

from __future__ import annotations

import dataclasses
import struct
from datetime import timedelta
from pathlib import Path

import pytest

from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.quote import layout
from services.attest.quote.errors import (
    CollateralError,
    QuoteChainError,
    QuoteFormatError,
    QuoteSignatureError,
)
from services.attest.quote.roots import intel_root_pem
from services.attest.quote.verify import QuoteVerifier
from services.attest.sim import pcs
from services.attest.sim.pki import SIM_PCE_SVN, SimPki
from tests.attest.conftest import MRENCLAVE, MRSIGNER, NOW

REPORT_DATA = bytes(range(64))


@pytest.fixture(scope="module")
def quote(platform: SimPlatform) -> bytes:
    return platform.quote(REPORT_DATA)


@pytest.fixture(scope="module")
def verifier(pki: SimPki) -> QuoteVerifier:
    return QuoteVerifier(pki.root_pem)


def test_layout_round_trip_every_field(quote: bytes) -> None:
    parsed = layout.parse(quote)
    assert parsed.pack() == quote
    assert parsed.header.version == 3
    assert parsed.header.att_key_type == 2
    assert parsed.header.tee_type == 0
    assert parsed.header.qe_svn == pcs.SIM_QE_SVN
    assert parsed.header.pce_svn == SIM_PCE_SVN
    assert parsed.header.qe_vendor_id == layout.INTEL_QE_VENDOR_ID
    assert parsed.report.mr_enclave == MRENCLAVE
    assert parsed.report.mr_signer == MRSIGNER
    assert parsed.report.isv_prod_id == 3
    assert parsed.report.isv_svn == 5
    assert parsed.report.report_data == REPORT_DATA
    assert parsed.report.debug is False
    assert parsed.qe_report.mr_signer == pcs.SIM_QE_MRSIGNER
    assert parsed.cert_data_type == layout.CERT_DATA_PCK_CHAIN
    assert parsed.cert_data.count(b"-----BEGIN CERTIFICATE-----") == 3
    # Offsets fixed by Intel's layout: REPORTDATA ends the 432 signed bytes.
    assert quote[48 + 320 : 48 + 384] == REPORT_DATA
    assert struct.unpack_from("<I", quote, 432)[0] == len(quote) - 436


def test_verify_accepts_sim_quote(quote: bytes, verifier: QuoteVerifier, pki: SimPki) -> None:
    verified = verifier.verify(quote, pcs.collateral(pki, NOW), NOW)
    assert verified.report.mr_enclave == MRENCLAVE
    assert verified.tcb_status == "UpToDate"
    assert "SIMULATED" in verified.pck_subject


@pytest.mark.parametrize("cut", [0, 10, 47, 48, 300, 432, 436, 500, 1000, -1], ids=str)
def test_truncated_quote_refused(quote: bytes, cut: int) -> None:
    with pytest.raises(QuoteFormatError, match=r"truncated|length|bytes"):
        layout.parse(quote[:cut])


def test_oversized_quote_refused(quote: bytes) -> None:
    with pytest.raises(QuoteFormatError, match="more than"):
        layout.parse(quote + bytes(layout.MAX_QUOTE_SIZE))


def test_trailing_bytes_refused(quote: bytes) -> None:
    with pytest.raises(QuoteFormatError):
        layout.parse(quote + b"\0")


def _flip(raw: bytes, offset: int) -> bytes:
    return raw[:offset] + bytes([raw[offset] ^ 0x01]) + raw[offset + 1 :]


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (48 + 64, QuoteSignatureError),  # MRENCLAVE in the report body
        (48 + 320, QuoteSignatureError),  # REPORTDATA
        (436 + 5, QuoteSignatureError),  # quote signature
        (436 + 64 + 5, QuoteSignatureError),  # attestation key
        (436 + 128 + 64, QuoteSignatureError),  # QE report (MRENCLAVE)
        (436 + 128 + 384 + 3, QuoteSignatureError),  # QE report signature
    ],
    ids=["mrenclave", "reportdata", "signature", "attestation-key", "qe-report", "qe-signature"],
)
def test_flipped_byte_refused(
    quote: bytes, verifier: QuoteVerifier, pki: SimPki, offset: int, error: type[Exception]
) -> None:
    with pytest.raises((error, ValueError)):
        verifier.verify(_flip(quote, offset), pcs.collateral(pki, NOW), NOW)


def test_chain_from_other_root_refused(quote: bytes, pki: SimPki, tmp_path: Path) -> None:
    other = SimPki.create(tmp_path / "other")
    with pytest.raises(QuoteChainError, match="not at the pinned root"):
        QuoteVerifier(other.root_pem).verify(quote, pcs.collateral(other, NOW), NOW)


def test_sim_quote_refused_when_hardware_root_pinned(quote: bytes, pki: SimPki) -> None:
    with pytest.raises(QuoteChainError, match="not at the pinned root"):
        QuoteVerifier(intel_root_pem()).verify(quote, pcs.collateral(pki, NOW), NOW)


def test_revoked_pck_refused(quote: bytes, verifier: QuoteVerifier, pki: SimPki) -> None:
    revoked = frozenset({pki.certs["pck"].serial_number})
    with pytest.raises(QuoteChainError, match="revoked"):
        verifier.verify(quote, pcs.collateral(pki, NOW, revoked), NOW)


def test_expired_pck_refused(quote: bytes, verifier: QuoteVerifier, pki: SimPki) -> None:
    later = NOW + timedelta(days=3651)
    with pytest.raises(QuoteChainError, match=r"validity|expired"):
        verifier.verify(quote, pcs.collateral(pki, later), later)


def test_expired_collateral_refused(quote: bytes, verifier: QuoteVerifier, pki: SimPki) -> None:
    stale = pcs.collateral(pki, NOW - timedelta(days=60), valid=timedelta(days=30))
    with pytest.raises((CollateralError, QuoteChainError), match="expired"):
        verifier.verify(quote, stale, NOW)


def test_tampered_tcb_info_refused(quote: bytes, verifier: QuoteVerifier, pki: SimPki) -> None:
    good = pcs.collateral(pki, NOW)
    bad = dataclasses.replace(good, tcb_info=good.tcb_info.replace("UpToDate", "UpToDatE"))
    with pytest.raises(CollateralError, match="signature"):
        verifier.verify(quote, bad, NOW)


def test_malformed_pem_chain_refused(quote: bytes, verifier: QuoteVerifier, pki: SimPki) -> None:
    parsed = layout.parse(quote)
    broken = dataclasses.replace(parsed, cert_data=b"-----BEGIN CERTIFICATE-----\nAAAA\n")
    with pytest.raises(QuoteChainError, match="PEM"):
        verifier.verify(broken.pack(), pcs.collateral(pki, NOW), NOW)


def test_debug_attribute_visible(sim_state: Path, verifier: QuoteVerifier, pki: SimPki) -> None:
    debug = SimPlatform(sim_state, SimEnclave(MRENCLAVE, MRSIGNER, debug=True))
    verified = verifier.verify(debug.quote(REPORT_DATA), pcs.collateral(pki, NOW), NOW)
    assert verified.report.debug is True
