"""Latency-over-time figure of one Table 3 model (matplotlib, Agg: no display)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from bench.interference import STRESS_WINDOWS, Run

COLORS = {"roundrobin": "tab:red", "leastconn": "tab:orange", "s3ml": "tab:green"}


def _per_second_p99(run: Run) -> tuple[list[float], list[float]]:
    buckets: dict[int, list[float]] = {}
    for s in run.samples:
        buckets.setdefault(int(s.start), []).append(s.latency_s * 1e3)
    xs = sorted(buckets)
    return [x + 0.5 for x in xs], [float(np.percentile(buckets[x], 99)) for x in xs]


def latency_over_time(runs: Mapping[str, Run], slo_ms: float, th: float, path: Path) -> Path:
    """Per-second p99 of each policy, the stress windows, the SLO, and node-0 paging."""
    fig, (ax, paging) = plt.subplots(2, 1, figsize=(10, 6), sharex=True,
                                     gridspec_kw={"height_ratios": [3, 1]})  # fmt: skip
    model = next(iter(runs.values())).model
    seconds = next(iter(runs.values())).seconds
    for begin, end in STRESS_WINDOWS:
        for axis in (ax, paging):
            axis.axvspan(begin * seconds, end * seconds, color="0.9")
    for policy, run in runs.items():
        xs, ys = _per_second_p99(run)
        ax.plot(xs, ys, color=COLORS[policy], label=f"{policy} (p99 {run.p99_ms:.0f} ms)")
        if run.paging:
            paging.plot(*zip(*run.paging, strict=True), color=COLORS[policy], lw=0.8)
        for d in run.decisions:
            ax.axvline(d.time - run.t0, color=COLORS[policy], ls=":", lw=0.8)
    ax.axhline(slo_ms, color="k", ls="--", lw=0.8, label=f"SLO {slo_ms:.0f} ms")
    paging.axhline(th, color="k", ls="--", lw=0.8, label=f"TH {th:.0f} MB/s")
    ax.set_yscale("log")
    ax.set_ylabel("p99 per second (ms)")
    ax.set_title(f"{model}: EPC stressor on node-0 (shaded); s3ml weight changes dotted")
    ax.legend(loc="upper left", fontsize=8)
    paging.set_ylabel("node-0 paging MB/s")
    paging.set_xlabel("seconds")
    paging.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
