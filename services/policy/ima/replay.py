"""Replaying IMA entries into PCR values, resumable for incremental verification."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from services.policy.ima.log import Entry

IMA_PCR = 10


@dataclass(frozen=True)
class ReplayState:
    """PCR 10 per bank after `entries` entries: where an incremental replay resumes."""

    entries: int
    pcrs: dict[str, bytes]

    @classmethod
    def initial(cls, banks: Iterable[str]) -> ReplayState:
        return cls(0, {bank: bytes(hashlib.new(bank).digest_size) for bank in banks})


def extend(state: ReplayState, entries: Iterable[Entry]) -> ReplayState:
    pcrs = dict(state.pcrs)
    count = state.entries
    for entry in entries:
        if entry.pcr == IMA_PCR:
            for bank, value in pcrs.items():
                pcrs[bank] = hashlib.new(bank, value + entry.digest_for_bank(bank)).digest()
        count += 1
    return ReplayState(count, pcrs)


def boot_aggregate(pcr_values: list[bytes], bank: str) -> bytes:
    """boot_aggregate over PCRs 0-9 of `bank` (TPM 2.0 kernels include 8 and 9)."""
    return hashlib.new(bank, b"".join(pcr_values)).digest()
