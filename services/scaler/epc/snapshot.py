"""What an EPC source reports about one node: the values the exporter publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

PAGE_SIZE = 4096
KINDS = ("model_server", "stressor", "acs", "other")


@dataclass(frozen=True)
class Enclave:
    """One enclave on the node and the EPC it needs."""

    name: str
    kind: str
    pid: int
    working_set_bytes: int
    resident_pages: int


@dataclass(frozen=True)
class EpcSnapshot:
    """EPC state of a node at one instant.

    Paging counters are cumulative 4 KiB page counts (Prometheus counters); None
    when the source cannot see paging (the in-kernel driver exposes no counter).
    """

    node: str
    epc_bytes: int
    pages_in_use: int
    paged_in: int | None
    paged_out: int | None
    enclaves: tuple[Enclave, ...]
    simulated: bool

    @property
    def foreign_enclaves(self) -> int:
        """Enclaves that are not s3ml model servers: the interference sources."""
        return sum(1 for e in self.enclaves if e.kind != "model_server")


class EpcSource(Protocol):
    """A node's EPC statistics: the sim pool or a hardware driver's files."""

    def snapshot(self) -> EpcSnapshot: ...
