"""The ACS error tree; `services.attest.api.status` maps each class to one gRPC code."""

from __future__ import annotations


class AcsError(Exception):
    """Base of the errors an ACS operation reports to its caller."""


class NotFoundError(AcsError):
    """An unknown service, policy or record."""


class AlreadyExistsError(AcsError):
    """A name that is already taken."""


class InvalidArgumentError(AcsError):
    """A malformed request: bad bytes, names, keys or documents."""


class PermissionDeniedError(AcsError):
    """A genuine but unacceptable request: policy, revocation, stale nonce."""


class UnauthenticatedError(AcsError):
    """Evidence that does not authenticate: bad signatures, foreign roots."""


class FailedPreconditionError(AcsError):
    """The request cannot succeed in the current state (stale revision, expired collateral)."""
