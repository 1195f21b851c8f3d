"""Per-model SLOs and thresholds from the offline profiler's JSON files.

The format and its reader are services/scaler/profile.py (the profiler writes it).
Models without a profile get the paper's SLO and a conservative default TH, so
the controller still protects them before anyone has profiled.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from services.scaler.controller.state import ModelSlo
from services.scaler.profile import DEFAULT_SLOS_MS as PAPER_SLO_MS
from services.scaler.profile import Profile, ProfileError

__all__ = ["DEFAULT_THRESHOLD_MB_PER_S", "PAPER_SLO_MS", "ProfileError", "load_slos"]

# Used only for unprofiled models; a profile replaces it.
DEFAULT_THRESHOLD_MB_PER_S = 100.0


def load_slos(
    directory: Path | None, models: list[str], defaults: ModelSlo | None = None
) -> dict[str, ModelSlo]:
    """SLOs for `models` (and any profiled model), profiles overriding the paper's."""
    template = defaults or ModelSlo("template", 100.0, DEFAULT_THRESHOLD_MB_PER_S)
    slos = {
        m: replace(template, model=m, p99_ms=PAPER_SLO_MS.get(m, template.p99_ms)) for m in models
    }
    for path in sorted(directory.glob("*.json")) if directory else []:
        try:
            profile = Profile.load(path)
            slos[profile.model] = replace(
                template,
                model=profile.model,
                p99_ms=profile.slo_p99_ms,
                threshold_mb_per_s=profile.threshold_mb_per_s,
            )
        except (ProfileError, ValueError) as err:
            raise ProfileError(f"{path}: {err}") from err
    return slos
