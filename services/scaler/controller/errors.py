"""Domain errors of the controller; services/scaler/api maps them to gRPC codes."""

from __future__ import annotations


class UnknownEndpointError(Exception):
    """No endpoint with that id; GetStatus lists the ids."""


class UnknownModelError(Exception):
    """The controller serves no such model."""


class LastEndpointError(Exception):
    """The change would leave a model with no endpoint in rotation."""


class NoCapacityError(Exception):
    """No calm node has free EPC for another replica."""
