"""Pinned quote trust roots. Production pins Intel's; sim must be asked for by name."""

from __future__ import annotations

from pathlib import Path

# Intel SGX Root CA, SHA-256 fingerprint
# 44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3,
# as published by Intel's PCS and carried in every PCK chain.
INTEL_SGX_ROOT_CA = Path(__file__).with_name("intel_sgx_root_ca.pem")


def intel_root_pem() -> bytes:
    return INTEL_SGX_ROOT_CA.read_bytes()
