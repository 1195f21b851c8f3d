"""Per-model SLOs and thresholds from the offline profiler's JSON files.

Format (shared with services/scaler/profile.py of the EPC side, kept identical):
{"model", "slo_p99_ms", "threshold_mb_per_s", "steps": [...], "platform": "sim"|"sgx"}.
Models without a profile get the paper's SLO and a conservative default TH, so
the controller still protects them before anyone has profiled.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from services.scaler.controller.state import ModelSlo

# S3ML section 3 (p99 SLOs).
PAPER_SLO_MS = {
    "mobilenet_v1_f32": 100.0,
    "mobilenet_v1_int8": 100.0,
    "efficientnet_lite0_f32": 500.0,
    "efficientnet_lite0_int8": 600.0,
}
# Used only for unprofiled models; a profile replaces it.
DEFAULT_THRESHOLD_MB_PER_S = 100.0


class ProfileError(Exception):
    """A profile file is unreadable or malformed; the message names the file and field."""


def parse(text: str, source: str = "profile") -> tuple[str, float, float]:
    """(model, slo_p99_ms, threshold_mb_per_s) of one profile document."""
    try:
        doc = json.loads(text)
        model, slo, th = doc["model"], doc["slo_p99_ms"], doc["threshold_mb_per_s"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ProfileError(f"{source}: not a profile ({err})") from err
    if not isinstance(model, str) or not all(isinstance(v, int | float) for v in (slo, th)):
        raise ProfileError(f"{source}: model must be a string, SLO and threshold numbers")
    if doc.get("platform", "sim") not in ("sim", "sgx"):
        raise ProfileError(f"{source}: platform must be 'sim' or 'sgx'")
    return model, float(slo), float(th)


def load_slos(
    directory: Path | None, models: list[str], defaults: ModelSlo | None = None
) -> dict[str, ModelSlo]:
    """SLOs for `models` (and any profiled model), profiles overriding the paper's."""
    template = defaults or ModelSlo("template", 100.0, DEFAULT_THRESHOLD_MB_PER_S)
    slos = {
        m: replace(template, model=m, p99_ms=PAPER_SLO_MS.get(m, template.p99_ms)) for m in models
    }
    for path in sorted(directory.glob("*.json")) if directory else []:
        model, slo, th = parse(path.read_text(), str(path))
        try:
            slos[model] = replace(template, model=model, p99_ms=slo, threshold_mb_per_s=th)
        except ValueError as err:
            raise ProfileError(f"{path}: {err}") from err
    return slos
