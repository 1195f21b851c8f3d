"""The `sim` backend: a simulated enclave with a measurement from its manifest.

Quotes are real DCAP v3 bytes from the simulated QE (services.attest.sim); the
sealing key is derived from a 0600 per-node secret and the MRENCLAVE, so a
different enclave build cannot unseal another's state, as on hardware.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from services.attest.platform.base import check_report_data
from services.attest.quote import layout
from services.attest.sim.pki import SIM_CPU_SVN, SimPki, write_private
from services.attest.sim.quoting import sim_quote


@dataclass(frozen=True)
class SimEnclave:
    """Identity of a simulated enclave, as its manifest and signer define it."""

    mr_enclave: bytes
    mr_signer: bytes
    isv_prod_id: int = 0
    isv_svn: int = 0
    debug: bool = False


class SimPlatform:
    name = "sim"
    simulated = True

    def __init__(self, state_dir: Path, enclave: SimEnclave) -> None:
        self._pki = SimPki.load(state_dir)
        self._enclave = enclave
        self._node_secret = _node_secret(state_dir)

    def quote(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        flags = layout.ATTR_INIT | layout.ATTR_MODE64BIT
        if self._enclave.debug:
            flags |= layout.ATTR_DEBUG
        report = layout.ReportBody(
            cpu_svn=SIM_CPU_SVN,
            misc_select=0,
            attributes=flags.to_bytes(8, "little") + (0x3).to_bytes(8, "little"),
            mr_enclave=self._enclave.mr_enclave,
            mr_signer=self._enclave.mr_signer,
            isv_prod_id=self._enclave.isv_prod_id,
            isv_svn=self._enclave.isv_svn,
            report_data=report_data,
        )
        return sim_quote(self._pki, report)

    def sealing_key(self) -> bytes:
        return hmac.new(self._node_secret, self._enclave.mr_enclave, hashlib.sha256).digest()


def _node_secret(state_dir: Path) -> bytes:
    path = state_dir / "node-sealing.secret"
    if not path.exists():
        write_private(path, os.urandom(32))
    return path.read_bytes()
