"""The profile plot: latency percentiles vs paging throughput (paper Figs. 3-5)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on nodes or in CI

import matplotlib.pyplot as plt

from services.scaler.profile import Profile


def save(profile: Profile, path: Path) -> Path:
    steps = sorted(profile.steps, key=lambda s: s.paging_mb_per_s)
    x = [s.paging_mb_per_s for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in ("p50", "p90", "p95", "p99"):
        ax.plot(x, [getattr(s, f"{label}_ms") for s in steps], marker="o", label=label.upper())
    ax.axhline(profile.slo_p99_ms, color="red", linestyle="--", label="p99 SLO")
    ax.axvline(profile.threshold_mb_per_s, color="gray", linestyle=":", label="TH")
    ax.set_xlabel("EPC paging throughput (MB/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(
        f"{profile.model} ({profile.platform}): TH = {profile.threshold_mb_per_s:.1f} MB/s"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
