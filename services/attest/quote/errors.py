"""Why a quote was refused. Each class maps to one gRPC status in the servicer."""

from __future__ import annotations


class QuoteError(Exception):
    """Base of every quote failure; the message says what to fix, never a secret."""


class QuoteFormatError(QuoteError):
    """The bytes are not an SGX DCAP ECDSA v3 quote (truncated, oversized, bad field)."""


class QuoteSignatureError(QuoteError):
    """A signature in the quote does not verify, or the QE did not certify the key."""


class QuoteChainError(QuoteError):
    """The PCK certificate chain does not lead to the pinned root, or a cert is revoked."""


class CollateralError(QuoteError):
    """TCB info / QE identity collateral missing, expired or not signed under the root."""
