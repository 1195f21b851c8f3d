"""A real SGX DCAP v3 quote from hardware, with its Intel collateral (see testdata/README.md).

The same verifier that checks sim quotes must accept it under the pinned Intel
root, refuse it under the sim root, and read Intel's TCB status from it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.attest.quote import layout
from services.attest.quote.collateral import Collateral
from services.attest.quote.errors import CollateralError, QuoteChainError
from services.attest.quote.pck_extension import platform_tcb
from services.attest.quote.roots import intel_root_pem
from services.attest.quote.verify import QuoteVerifier
from services.attest.sim.pki import SimPki

DATA = Path(__file__).with_name("testdata")
# The instant the collateral snapshot was taken (its fixture's verification time).
CAPTURED = datetime.fromtimestamp(1755236700, UTC)


@pytest.fixture(scope="module")
def quote() -> bytes:
    return (DATA / "sgx_dcap_v3_quote.bin").read_bytes()


@pytest.fixture(scope="module")
def collateral() -> Collateral:
    return Collateral.from_json((DATA / "sgx_dcap_v3_collateral.json").read_text())


def test_hardware_quote_layout(quote: bytes) -> None:
    parsed = layout.parse(quote)
    assert parsed.pack() == quote
    assert parsed.header.qe_vendor_id == layout.INTEL_QE_VENDOR_ID
    assert parsed.report.mr_enclave.hex().startswith("a4f45c39dac622cb")
    assert parsed.report.debug is False
    assert parsed.cert_data_type == layout.CERT_DATA_PCK_CHAIN


def test_hardware_quote_verifies_under_intel_root(quote: bytes, collateral: Collateral) -> None:
    verified = QuoteVerifier(intel_root_pem()).verify(quote, collateral, CAPTURED)
    # dcap-qvl 0.7.0 reports the same status for this quote and collateral.
    assert verified.tcb_status == "SWHardeningNeeded"
    assert "Intel SGX PCK Certificate" in verified.pck_subject


def test_hardware_pck_extension(quote: bytes) -> None:
    from cryptography import x509  # noqa: PLC0415

    leaf = x509.load_pem_x509_certificates(layout.parse(quote).cert_data.rstrip(b"\0"))[0]
    tcb = platform_tcb(leaf)
    assert tcb.fmspc.hex() == "00606a000000"
    assert len(tcb.components) == 16


def test_hardware_quote_refused_under_sim_root(
    quote: bytes, collateral: Collateral, tmp_path: Path
) -> None:
    sim = SimPki.create(tmp_path / "sim")
    with pytest.raises(QuoteChainError, match="not at the pinned root"):
        QuoteVerifier(sim.root_pem).verify(quote, collateral, CAPTURED)


def test_hardware_collateral_expiry_enforced(quote: bytes, collateral: Collateral) -> None:
    with pytest.raises((CollateralError, QuoteChainError), match="expired"):
        QuoteVerifier(intel_root_pem()).verify(quote, collateral, CAPTURED + timedelta(days=60))


def test_hardware_tcb_info_tamper_detected(quote: bytes, collateral: Collateral) -> None:
    edited = collateral.tcb_info.replace("SWHardeningNeeded", "UpToDate", 1)
    bad = dataclasses.replace(collateral, tcb_info=edited)
    with pytest.raises(CollateralError, match="signature"):
        QuoteVerifier(intel_root_pem()).verify(quote, bad, CAPTURED)
