"""Profiles (the profiler's JSON contract) become the controller's SLOs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.scaler.controller.profiles import DEFAULT_THRESHOLD_MB_PER_S, ProfileError, load_slos
from services.scaler.controller.state import ModelSlo


def write(directory: Path, name: str, **overrides: object) -> None:
    doc = {
        "model": name,
        "slo_p99_ms": 100.0,
        "threshold_mb_per_s": 42.5,
        "steps": [{"paging_mb_per_s": 0.0, "p50_ms": 5, "p90_ms": 7, "p95_ms": 8, "p99_ms": 9}],
        "platform": "sim",
    }
    (directory / f"{name}.json").write_text(json.dumps({**doc, **overrides}))


def test_paper_defaults_without_profiles() -> None:
    slos = load_slos(None, ["mobilenet_v1_f32", "efficientnet_lite0_int8"])
    assert slos["mobilenet_v1_f32"].p99_ms == 100.0
    assert slos["efficientnet_lite0_int8"].p99_ms == 600.0
    assert slos["efficientnet_lite0_int8"].threshold_mb_per_s == DEFAULT_THRESHOLD_MB_PER_S


def test_profile_overrides_slo_and_threshold_and_keeps_the_template(tmp_path: Path) -> None:
    write(tmp_path, "efficientnet_lite0_f32", slo_p99_ms=450.0)
    template = ModelSlo("t", 1.0, 1.0, intervals_over_threshold=5, min_replicas=2, max_replicas=6)
    slo = load_slos(tmp_path, ["efficientnet_lite0_f32"], template)["efficientnet_lite0_f32"]
    assert (slo.p99_ms, slo.threshold_mb_per_s) == (450.0, 42.5)
    assert (slo.intervals_over_threshold, slo.min_replicas, slo.max_replicas) == (5, 2, 6)


@pytest.mark.parametrize(
    "overrides",
    [
        {"threshold_mb_per_s": "fast"},
        {"platform": "tdx"},
        {"threshold_mb_per_s": -1.0},
        {"model": 3},
    ],
)
def test_malformed_profiles_name_the_file(tmp_path: Path, overrides: dict[str, object]) -> None:
    write(tmp_path, "m", **overrides)
    with pytest.raises(ProfileError, match=r"m\.json"):
        load_slos(tmp_path, [])


def test_not_json_is_a_profile_error(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(ProfileError, match="malformed profile"):
        load_slos(tmp_path, [])
