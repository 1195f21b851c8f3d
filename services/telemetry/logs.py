"""Log setup shared by every s3ml component: each line names the component and,
on the simulated platform, says so — an operator reading any single line
knows whether hardware protection was in force."""

from __future__ import annotations

import logging
import sys


def configure(
    component: str, simulated: bool, level: int = logging.INFO, hardware: str = "sgx"
) -> logging.Logger:
    """`hardware` names what is simulated: SGX for enclaves, TPM for host agents."""
    platform = f"platform=SIMULATED-{hardware.upper()}" if simulated else f"platform={hardware}"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s {component} {platform} %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return logging.getLogger(component)
