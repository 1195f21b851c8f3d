"""Offline model profiles: the paging threshold TH the controller acts on (S3ML 2.6).

One JSON file per model, written by the profiler and read by the controller:
`{"model", "slo_p99_ms", "threshold_mb_per_s", "steps": [{"paging_mb_per_s", "p50_ms",
"p90_ms", "p95_ms", "p99_ms"}], "platform": "sim"|"sgx"}`. Keep the format exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLATFORMS = ("sim", "sgx")
# The paper's p99 SLOs (section 3), milliseconds.
DEFAULT_SLOS_MS = {
    "mobilenet_v1_f32": 100.0,
    "mobilenet_v1_int8": 100.0,
    "efficientnet_lite0_f32": 500.0,
    "efficientnet_lite0_int8": 600.0,
}


class ProfileError(ValueError):
    """A profile file is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class Step:
    """Latency percentiles measured at one level of EPC interference."""

    paging_mb_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Profile:
    model: str
    slo_p99_ms: float
    threshold_mb_per_s: float
    steps: tuple[Step, ...]
    platform: str

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "slo_p99_ms": self.slo_p99_ms,
                "threshold_mb_per_s": self.threshold_mb_per_s,
                "steps": [vars(s) for s in self.steps],
                "platform": self.platform,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Profile:
        try:
            raw = json.loads(text)
            if not isinstance(raw["model"], str) or not raw["model"]:
                raise ProfileError("profile model must be a non-empty string")
            profile = cls(
                model=str(raw["model"]),
                slo_p99_ms=_number(raw["slo_p99_ms"]),
                threshold_mb_per_s=_number(raw["threshold_mb_per_s"]),
                steps=tuple(_step(s) for s in raw["steps"]),
                platform=str(raw["platform"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ProfileError(f"malformed profile: {err}") from err
        if profile.platform not in PLATFORMS:
            raise ProfileError(f"profile platform must be one of {PLATFORMS}")
        if profile.slo_p99_ms <= 0 or profile.threshold_mb_per_s < 0:
            raise ProfileError("profile needs slo_p99_ms > 0 and threshold_mb_per_s >= 0")
        return profile

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.model}.json"
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: Path) -> Profile:
        try:
            text = path.read_text()
        except OSError as err:
            raise ProfileError(f"cannot read profile {path}: {err.strerror}") from err
        return cls.from_json(text)


def _number(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ProfileError("profile numbers must be finite")
    return number


def _step(raw: dict[str, Any]) -> Step:
    return Step(
        paging_mb_per_s=_number(raw["paging_mb_per_s"]),
        p50_ms=_number(raw["p50_ms"]),
        p90_ms=_number(raw["p90_ms"]),
        p95_ms=_number(raw["p95_ms"]),
        p99_ms=_number(raw["p99_ms"]),
    )


def load_all(directory: Path) -> dict[str, Profile]:
    """Every `*.json` profile of a directory, by model name."""
    return {p.model: p for p in (Profile.load(f) for f in sorted(directory.glob("*.json")))}
