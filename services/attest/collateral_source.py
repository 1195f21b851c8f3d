"""Where the ACS gets the collateral to verify a quote.

Production reads the collateral a PCCS/PCS fetcher keeps fresh on disk (the
dcap-qvl JSON layout); the sim platform asks its simulated PCS. The verifier
trusts neither: collateral is checked against the pinned root.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Protocol

from services.attest.quote.collateral import Collateral
from services.attest.sim import pcs
from services.attest.sim.pki import SimPki


class CollateralSource(Protocol):
    def collateral(self, now: datetime) -> Collateral: ...


class FileCollateral:
    """Collateral JSON maintained by an external fetcher (e.g. from a PCCS)."""

    def __init__(self, path: Path) -> None:
        self._path = path

    def collateral(self, now: datetime) -> Collateral:
        return Collateral.from_json(self._path.read_text())


class SimPcsCollateral:
    """Collateral from the simulated PCS, regenerated hourly like a PCCS cache."""

    def __init__(self, state_dir: Path, revoked: frozenset[int] = frozenset()) -> None:
        self._pki = SimPki.load(state_dir)
        self._revoked = revoked
        self._cached: tuple[float, Collateral] | None = None
        self._lock = threading.Lock()

    def collateral(self, now: datetime) -> Collateral:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > 3600:
                self._cached = (time.monotonic(), pcs.collateral(self._pki, now, self._revoked))
            return self._cached[1]
