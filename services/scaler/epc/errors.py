"""EPC accounting errors: one base, so callers can catch the package's failures."""

from __future__ import annotations


class EpcError(Exception):
    """Base of every EPC accounting failure."""


class EpcFormatError(EpcError):
    """A statistics file does not have the format this parser knows."""


class EpcUnavailableError(EpcError):
    """The EPC statistics source is missing on this node (no driver, no pool)."""


class PoolFullError(EpcError):
    """No free enclave slot in the sim pool (too many live enclaves on one node)."""
