"""Fixtures shared by the attestation tests: a real simulated PKI in tmp dirs."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.sim.pki import SimPki

NOW = datetime.now(UTC)
MRENCLAVE = hashlib.sha256(b"model-server build 1").digest()
MRSIGNER = hashlib.sha256(b"s3ml test signer").digest()


@pytest.fixture(scope="session")
def sim_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("sim")
    SimPki.create(state)
    return state


@pytest.fixture(scope="session")
def pki(sim_state: Path) -> SimPki:
    return SimPki.load(sim_state)


@pytest.fixture(scope="session")
def platform(sim_state: Path) -> SimPlatform:
    return SimPlatform(sim_state, SimEnclave(MRENCLAVE, MRSIGNER, isv_prod_id=3, isv_svn=5))
