"""EPC stressor (the stress-SGX equivalent): N MiB in a sim enclave, touched at a set rate.

Touching walks the working set cyclically, so once the node's EPC is
oversubscribed every touch misses (LRU evicts the page needed next) and paging
throughput follows the touch rate: what the profiler and experiments dial.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from services.scaler.epc.pool import MIB, EpcPool
from services.scaler.epc.snapshot import PAGE_SIZE

TICK_SECONDS = 0.02  # short ticks: interference spread in time, not in bursts


@dataclass(frozen=True)
class StressPlan:
    mib: int
    pages_per_second: float
    duration_s: float  # 0: until stopped
    name: str = "stressor"

    @classmethod
    def from_mib_per_second(cls, mib: int, mib_s: float, duration_s: float) -> StressPlan:
        return cls(mib, mib_s * MIB / PAGE_SIZE, duration_s)


@dataclass(frozen=True)
class StressReport:
    touched: int
    paged_in: int
    paged_out: int
    seconds: float


def run(
    pool: EpcPool,
    plan: StressPlan,
    stop: threading.Event,
    ready: Callable[[], None] = lambda: None,
) -> StressReport:
    """Allocates (first full touch), then touches at the planned rate until stop/duration."""
    handle = pool.register(plan.name, "stressor", plan.mib * MIB)
    started = time.monotonic()
    first = pool.touch(handle)
    touched, paged_in, paged_out = handle.pages, first.paged_in, first.paged_out
    ready()
    cursor, budget = 0, 0.0
    last = time.monotonic()
    try:
        while not stop.wait(TICK_SECONDS):
            now = time.monotonic()
            if plan.duration_s and now - started >= plan.duration_s:
                break
            budget += (now - last) * plan.pages_per_second
            last = now
            count = min(int(budget), handle.pages)
            if count <= 0:
                continue
            budget -= count
            result = pool.touch(handle, cursor, count)
            cursor = (cursor + count) % handle.pages
            touched += count
            paged_in += result.paged_in
            paged_out += result.paged_out
    finally:
        pool.unregister(handle)
    return StressReport(touched, paged_in, paged_out, time.monotonic() - started)
