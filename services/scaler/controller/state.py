"""Values the controller reasons about: SLOs, node EPC samples, endpoints, decisions.

All frozen: each control interval produces new values, so a status snapshot
taken by the API thread can never observe a half-applied interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PAGE_BYTES = 4096
MAX_WEIGHT = 256


@dataclass(frozen=True)
class ModelSlo:
    """A model's p99 objective, its profiled paging threshold TH and scaling bounds."""

    model: str
    p99_ms: float
    threshold_mb_per_s: float
    intervals_over_threshold: int = 3
    min_replicas: int = 1
    max_replicas: int = 3

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model name is empty")
        if not (self.p99_ms > 0 and math.isfinite(self.p99_ms)):
            raise ValueError(f"{self.model}: p99_ms must be a positive number, got {self.p99_ms}")
        if not (self.threshold_mb_per_s > 0 and math.isfinite(self.threshold_mb_per_s)):
            raise ValueError(
                f"{self.model}: threshold must be a positive MB/s value, "
                f"got {self.threshold_mb_per_s}"
            )
        if self.intervals_over_threshold < 1:
            raise ValueError(f"{self.model}: intervals_over_threshold must be >= 1")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"{self.model}: need 1 <= min_replicas <= max_replicas, "
                f"got {self.min_replicas}..{self.max_replicas}"
            )


@dataclass(frozen=True)
class NodeEpc:
    """One node's EPC state over the last window, as read from Prometheus."""

    node: str
    epc_bytes: int = 0
    pages_in_use: int = 0
    paging_mb_per_s: float = 0.0
    enclaves: int = 0
    foreign_enclaves: int = 0
    fresh: bool = True

    @property
    def free_bytes(self) -> int:
        return max(0, self.epc_bytes - self.pages_in_use * PAGE_BYTES)


@dataclass(frozen=True)
class Endpoint:
    """One replica behind the load balancer, with Algorithm 1's per-endpoint state.

    `counter` counts consecutive intervals over TH; `calm` counts consecutive
    intervals below TH*h while out of rotation (the way back in).
    """

    id: str
    model: str
    node: str
    address: str
    weight: int = 1
    counter: int = 0
    calm: int = 0
    pinned: bool = False
    healthy: bool = True


@dataclass(frozen=True)
class Decision:
    time: float
    action: str  # weight | scale_out | scale_in | blind | hold
    target: str
    reason: str
