"""Ports the controller drives: the load balancer/orchestrator and replica lifecycle.

Two backends implement `Backend`: HAProxy's runtime API on the local cluster
and the Kubernetes API. The local cluster supplies a `ReplicaLauncher` so the
HAProxy backend can start and stop model-server processes on emulated nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from services.scaler.controller.state import Endpoint


class BackendError(Exception):
    """The backend refused or failed an operation; the message says which and why."""


class ScalingUnsupportedError(BackendError):
    """This backend was built without a way to start or stop replicas."""


@dataclass(frozen=True)
class Replica:
    """A started model-server replica: its name in the load balancer and address."""

    name: str
    address: str


class ReplicaLauncher(Protocol):
    def start(self, model: str, node: str) -> Replica: ...

    def stop(self, model: str, node: str, name: str) -> None: ...


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    def endpoints(self) -> Sequence[Endpoint]:
        """Every replica with its current weight and health (counters are the controller's)."""
        ...

    def set_weight(self, endpoint_id: str, weight: int) -> None: ...

    def scale_out(self, model: str, node: str) -> str:
        """Starts one replica of `model` (on `node` where the backend can place it); its id."""
        ...

    def scale_in(self, endpoint_id: str) -> None: ...
