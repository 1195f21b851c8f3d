"""Inference errors; `api.CODES` maps each to its gRPC status."""

from __future__ import annotations


class InferenceError(Exception):
    """Base of the errors a ModelInfer call reports."""


class ModelNotFoundError(InferenceError):
    """No such model, or no such version of it."""


class InvalidInputError(InferenceError):
    """The request does not match the model: names the tensor and what was expected."""


class OverloadedError(InferenceError):
    """The server's queue is full; retry with backoff."""


class NotReadyError(InferenceError):
    """The model or the server is not ready to serve."""


class DeadlineError(InferenceError):
    """The caller's deadline passed before inference could run."""
