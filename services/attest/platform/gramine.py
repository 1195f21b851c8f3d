"""The `gramine-sgx` backend: Gramine's /dev/attestation pseudo-files.

Inside a Gramine SGX enclave, writing 64 bytes to `user_report_data` and
reading `quote` yields a DCAP quote produced by the real Quoting Enclave;
`keys/_sgx_mrenclave` is the MRENCLAVE-bound sealing key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.attest.platform.base import PlatformError, check_report_data

DEFAULT_ROOT = Path("/dev/attestation")


@dataclass
class GramineSgxPlatform:
    root: Path = DEFAULT_ROOT
    name: str = "gramine-sgx"
    simulated: bool = False

    def __post_init__(self) -> None:
        kind = self.root / "attestation_type"
        if not kind.exists():
            raise PlatformError(f"{kind} not found: not running inside a Gramine SGX enclave")
        if kind.read_text().strip() != "dcap":
            raise PlatformError(
                f"Gramine attestation type is '{kind.read_text().strip()}', s3ml needs 'dcap' "
                '(set sgx.remote_attestation = "dcap" in the manifest)'
            )

    def quote(self, report_data: bytes) -> bytes:
        check_report_data(report_data)
        (self.root / "user_report_data").write_bytes(report_data)
        return (self.root / "quote").read_bytes()

    def sealing_key(self) -> bytes:
        raw = (self.root / "keys" / "_sgx_mrenclave").read_bytes()
        if len(raw) != 16 and len(raw) != 32:
            raise PlatformError(f"unexpected sealing key size {len(raw)}")
        return raw if len(raw) == 32 else _expand(raw)


def _expand(key128: bytes) -> bytes:
    """Gramine's SGX keys are 128-bit; derive a 256-bit AES key from one (HKDF)."""
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF  # noqa: PLC0415

    return HKDF(hashes.SHA256(), 32, salt=None, info=b"s3ml sealing key").derive(key128)
