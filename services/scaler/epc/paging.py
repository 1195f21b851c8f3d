"""The software cost of one EPC page swap on the simulated platform.

On SGX the driver evicts a page with EWB (AES-GCM encrypt + MAC of 4 KiB into
untrusted memory, version-array update) and reloads it with ELDU (decrypt and
verify), each behind an enclave exit and a page fault. We do the cryptographic
part for real (AES-128-GCM over 4 KiB, as the MEE-protected EWB/ELDU do) and add
a calibrated delay per page for the rest: exits, faults, TLB shootdowns and
version-array bookkeeping that software cannot reproduce.

Calibration (docs/epc.md): published measurements put one EPC page swap at
about 40,000 cycles — Taassori, Shafiee, Balasubramonian, "VAULT: Reducing
Paging Overheads in SGX with Efficient Integrity Verification Structures",
ASPLOS 2018 ("a page swap is expensive (about 40K cycles)"); Orenbach et al.,
"Eleos: ExitLess OS Services for SGX Enclaves", EuroSys 2017, report the same
order for an EPC fault with exit. 40K cycles at 3-4 GHz is 10-13 us per page;
the default extra delay is 12 us per page operation, configurable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.scaler.epc.snapshot import PAGE_SIZE

DEFAULT_EXTRA_DELAY_US = 12.0


@dataclass(frozen=True)
class PagingCost:
    """Per-page extra delay (microseconds) on top of the real AES-GCM work."""

    extra_delay_us: float = DEFAULT_EXTRA_DELAY_US


class PageCrypto:
    """Real EWB/ELDU-like work: encrypt pages out, decrypt-and-verify pages in."""

    def __init__(self, cost: PagingCost) -> None:
        self._cost = cost
        self._aead = AESGCM(AESGCM.generate_key(bit_length=128))
        self._page = os.urandom(PAGE_SIZE)
        self._counter = 0
        self._sealed_nonce = os.urandom(12)
        self._sealed = self._aead.encrypt(self._sealed_nonce, self._page, None)

    def swap(self, paged_out: int, paged_in: int) -> None:
        """Pays for `paged_out` evictions and `paged_in` reloads, in the caller's time."""
        for _ in range(paged_out):
            self._counter += 1
            self._aead.encrypt(self._counter.to_bytes(12, "big"), self._page, None)
        for _ in range(paged_in):
            self._aead.decrypt(self._sealed_nonce, self._sealed, None)
        delay = (paged_out + paged_in) * self._cost.extra_delay_us / 1e6
        if delay > 0:
            # One sleep per batch: sleeping per page would cost the timer slack each time.
            time.sleep(delay)
