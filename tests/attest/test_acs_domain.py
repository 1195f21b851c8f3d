"""ACS refusals that need a clock, a CRL or a root other than the running service's.

Driven through the real domain object (SQLite store, real crypto) and mapped
to gRPC codes by the same table the servicers use.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.attest.acs import Acs
from services.attest.api.status import code_for
from services.attest.appraisal import Policy, binding
from services.attest.collateral_source import CollateralSource, SimPcsCollateral
from services.attest.errors import AcsError
from services.attest.nonce import NonceBook
from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.quote.roots import intel_root_pem
from services.attest.quote.verify import QuoteVerifier
from services.attest.sealing import Sealer
from services.attest.sim.pki import SimPki
from services.attest.store.sqlite import SqliteStore
from tests.attest.acs_harness import MODEL_MRENCLAVE

SERVICE = "model"


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _acs(
    tmp: Path,
    sim_dir: Path,
    clock: Clock,
    verifier: QuoteVerifier | None = None,
    collateral: CollateralSource | None = None,
    nonces: NonceBook | None = None,
) -> Acs:
    acs = Acs(
        SqliteStore(tmp / "acs.db"),
        Sealer(bytes(32)),
        verifier or QuoteVerifier(SimPki.load(sim_dir).root_pem),
        collateral or SimPcsCollateral(sim_dir),
        nonces or NonceBook(),
        clock,
        "test",
    )
    acs.register_service(SERVICE, [], Policy(frozenset({MODEL_MRENCLAVE})), ["k"], {}, b"")
    return acs


def _attempt(acs: Acs, platform: SimPlatform) -> grpc.StatusCode | None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    nonce = acs.issue_nonce(SERVICE).value
    try:
        acs.attest(SERVICE, platform.quote(binding(spki, nonce)), spki, nonce, "i", "n")
    except AcsError as err:
        return code_for(err)
    return None


@pytest.fixture
def sim_dir(tmp_path: Path) -> Path:
    SimPki.create(tmp_path / "sim")
    return tmp_path / "sim"


@pytest.fixture
def platform(sim_dir: Path) -> SimPlatform:
    return SimPlatform(sim_dir, SimEnclave(MODEL_MRENCLAVE, bytes(32)))


Setup = Callable[[Path, Path, Clock], Acs]

CASES: list[tuple[str, Setup, grpc.StatusCode | None]] = [
    ("accepted", _acs, None),
    (
        "sim-quote-under-intel-root",
        lambda tmp, sim, clock: _acs(tmp, sim, clock, verifier=QuoteVerifier(intel_root_pem())),
        grpc.StatusCode.UNAUTHENTICATED,
    ),
    (
        "revoked-pck",
        lambda tmp, sim, clock: _acs(
            tmp,
            sim,
            clock,
            collateral=SimPcsCollateral(
                sim, frozenset({SimPki.load(sim).certs["pck"].serial_number})
            ),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    ),
    (
        "expired-nonce",
        lambda tmp, sim, clock: _acs(tmp, sim, clock, nonces=NonceBook(ttl_seconds=-1.0)),
        grpc.StatusCode.PERMISSION_DENIED,
    ),
]


@pytest.mark.parametrize(("setup", "code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusal_codes(
    tmp_path: Path, sim_dir: Path, platform: SimPlatform, setup: Setup, code: grpc.StatusCode | None
) -> None:
    acs = setup(tmp_path, sim_dir, Clock())
    assert _attempt(acs, platform) == code
    _, identity = acs.service(SERVICE)
    assert (identity is None) == (code is not None), "a refusal must provision nothing"


def test_expired_pck_certificate(tmp_path: Path, sim_dir: Path, platform: SimPlatform) -> None:
    clock = Clock()
    acs = _acs(tmp_path, sim_dir, clock)
    clock.now += timedelta(days=3651)  # past the PCK chain's notAfter
    assert _attempt(acs, platform) == grpc.StatusCode.UNAUTHENTICATED
    assert acs.service(SERVICE)[1] is None
