"""The TEE platform port: the only place that differs between SGX and sim.

Nothing else in s3ml branches on the backend: code asks its platform for a
quote over 64 bytes of report data and for a sealing key, and reads
`simulated` only to say so in logs and status output.
"""

from __future__ import annotations

from typing import Protocol

SIM_WARNING = (
    "SIMULATED SGX platform: quotes are signed under the s3ml simulated root CA, "
    "not Intel's; nothing here is protected from the host. For development and CI only."
)


class PlatformError(Exception):
    """The platform could not produce a quote or a key."""


class TeePlatform(Protocol):
    """What an enclave workload needs from its TEE."""

    name: str
    simulated: bool

    def quote(self, report_data: bytes) -> bytes:
        """A DCAP v3 quote of this enclave whose REPORTDATA is `report_data` (64 bytes)."""
        ...

    def sealing_key(self) -> bytes:
        """A 32-byte key bound to this enclave's identity (MRENCLAVE policy)."""
        ...


def check_report_data(report_data: bytes) -> None:
    if len(report_data) != 64:
        raise PlatformError(f"report data must be 64 bytes, got {len(report_data)}")
