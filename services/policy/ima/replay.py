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
    """Extends each bank as the kernel does; the hot loop of every verification."""
    banks = [(bank, getattr(hashlib, bank), value) for bank, value in state.pcrs.items()]
    values = [value for _, _, value in banks]
    count = state.entries
    for entry in entries:
        count += 1
        if entry.pcr != IMA_PCR:
            continue
        for i, (bank, ctor, _) in enumerate(banks):
            if entry.violation:
                measured = entry.digest_for_bank(bank)
            elif bank == "sha1":
                measured = entry.template_digest
            else:
                measured = ctor(entry.hashed_data).digest()
            values[i] = ctor(values[i] + measured).digest()
    return ReplayState(count, {bank: values[i] for i, (bank, _, _) in enumerate(banks)})


def boot_aggregate(pcr_values: list[bytes], bank: str) -> bytes:
    """boot_aggregate over PCRs 0-9 of `bank` (TPM 2.0 kernels include 8 and 9)."""
    return hashlib.new(bank, b"".join(pcr_values)).digest()
