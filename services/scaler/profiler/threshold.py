"""Pure profile arithmetic: latency percentiles and the paging threshold TH.

TH is the lowest paging throughput at which p99 exceeds the SLO. Steps are
taken in order of paging throughput; at the first step over the SLO we
interpolate linearly between it and the previous step (paging vs p99) for the
throughput where p99 crosses the SLO. If the very first step already violates
the SLO, TH is its throughput (nothing lower was measured). If no step
violates it, TH is the highest throughput measured: the model is known safe
up to there and nothing is known beyond, so the controller stays conservative.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.scaler.profile import Step


class ThresholdError(ValueError):
    """Not enough measurements to derive a threshold."""


def step(paging_mb_per_s: float, latencies_ms: Sequence[float]) -> Step:
    if not latencies_ms:
        raise ThresholdError("a step needs at least one latency measurement")
    p50, p90, p95, p99 = np.percentile(np.asarray(latencies_ms), [50, 90, 95, 99])
    return Step(paging_mb_per_s, float(p50), float(p90), float(p95), float(p99))


def derive_threshold(steps: Sequence[Step], slo_p99_ms: float) -> tuple[float, bool]:
    """(TH in MB/s, whether the SLO was violated in any step)."""
    if not steps:
        raise ThresholdError("no profile steps measured")
    ordered = sorted(steps, key=lambda s: s.paging_mb_per_s)
    for i, current in enumerate(ordered):
        if current.p99_ms <= slo_p99_ms:
            continue
        if i == 0:
            return current.paging_mb_per_s, True
        prev = ordered[i - 1]
        rise = current.p99_ms - prev.p99_ms
        fraction = (slo_p99_ms - prev.p99_ms) / rise if rise > 0 else 0.0
        span = current.paging_mb_per_s - prev.paging_mb_per_s
        return prev.paging_mb_per_s + fraction * span, True
    return ordered[-1].paging_mb_per_s, False
