"""Cross-check with dcap-qvl, an independent implementation of Intel's QVL.

It must agree with our verifier on the real hardware quote, and accept our
sim quotes under the sim root (proving the sim produces genuine DCAP v3
bytes and Intel-shaped collateral) while refusing them under Intel's root.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from pathlib import Path

import dcap_qvl
import pytest
from cryptography.hazmat.primitives import serialization

from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.quote.collateral import Collateral
from services.attest.quote.roots import intel_root_pem
from services.attest.quote.verify import QuoteVerifier
from services.attest.sim import pcs
from services.attest.sim.pki import SimPki

DATA = Path(__file__).with_name("testdata")
CAPTURED = 1755236700


def test_agrees_on_hardware_quote() -> None:
    quote = (DATA / "sgx_dcap_v3_quote.bin").read_bytes()
    text = (DATA / "sgx_dcap_v3_collateral.json").read_text()
    theirs = dcap_qvl.verify(quote, dcap_qvl.QuoteCollateralV3.from_json(text), CAPTURED)
    ours = QuoteVerifier(intel_root_pem()).verify(
        quote, Collateral.from_json(text), datetime.fromtimestamp(CAPTURED, UTC)
    )
    assert theirs.status == ours.tcb_status == "SWHardeningNeeded"


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimPki, bytes, Collateral]:
    directory = tmp_path_factory.mktemp("sim")
    pki = SimPki.create(directory)
    enclave = SimEnclave(hashlib.sha256(b"a").digest(), hashlib.sha256(b"b").digest())
    quote = SimPlatform(directory, enclave).quote(bytes(range(64)))
    return pki, quote, pcs.collateral(pki, datetime.now(UTC))


def test_dcap_qvl_accepts_sim_quote_under_sim_root(sim: tuple[SimPki, bytes, Collateral]) -> None:
    pki, quote, collateral = sim
    root_der = pki.certs["root"].public_bytes(serialization.Encoding.DER)
    theirs = dcap_qvl.verify_with_root_ca(
        quote,
        dcap_qvl.QuoteCollateralV3.from_json(collateral.to_json()),
        root_der,
        int(time.time()),
    )
    ours = QuoteVerifier(pki.root_pem).verify(quote, collateral, datetime.now(UTC))
    assert theirs.status == ours.tcb_status == "UpToDate"


def test_dcap_qvl_refuses_sim_quote_under_intel_root(sim: tuple[SimPki, bytes, Collateral]) -> None:
    _, quote, collateral = sim
    with pytest.raises(ValueError, match=r"(?i)verif|root|cert|chain|signature"):
        dcap_qvl.verify(
            quote, dcap_qvl.QuoteCollateralV3.from_json(collateral.to_json()), int(time.time())
        )


def test_dcap_qvl_refuses_tampered_sim_quote(sim: tuple[SimPki, bytes, Collateral]) -> None:
    pki, quote, collateral = sim
    tampered = quote[:112] + bytes([quote[112] ^ 1]) + quote[113:]
    root_der = pki.certs["root"].public_bytes(serialization.Encoding.DER)
    with pytest.raises(ValueError, match=r"(?i)signature|verif"):
        dcap_qvl.verify_with_root_ca(
            tampered,
            dcap_qvl.QuoteCollateralV3.from_json(collateral.to_json()),
            root_der,
            int(time.time()),
        )
