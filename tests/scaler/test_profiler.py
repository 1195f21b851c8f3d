"""The offline profiler: TH from synthetic steps (pure), and one small real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.scaler.profile import Profile, ProfileError, Step
from services.scaler.profiler import main as profiler_main
from services.scaler.profiler.threshold import ThresholdError, derive_threshold, step


def s(paging: float, p99: float) -> Step:
    return Step(paging, p99 / 4, p99 / 2, p99 / 1.5, p99)


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([s(0, 20), s(10, 60), s(20, 140), s(40, 300)], (15.0, True)),
        ([s(20, 140), s(0, 20), s(10, 60)], (15.0, True)),  # order of measurement is irrelevant
        ([s(5, 150), s(10, 200)], (5.0, True)),  # violated from the first step
        ([s(0, 20), s(10, 30)], (10.0, False)),  # never violated: highest measured
        ([s(0, 20), s(10, 100), s(20, 101)], (10.0, True)),  # at the SLO is within it
        ([s(0, 150), s(10, 150)], (0.0, True)),
    ],
    ids=["interpolated", "unordered", "first-step", "never", "at-slo", "flat-over"],
)
def test_threshold(steps: list[Step], expected: tuple[float, bool]) -> None:
    threshold, violated = derive_threshold(steps, 100.0)
    assert threshold == pytest.approx(expected[0])
    assert violated is expected[1]


def test_threshold_needs_steps() -> None:
    with pytest.raises(ThresholdError):
        derive_threshold([], 100.0)
    with pytest.raises(ThresholdError):
        step(1.0, [])


def test_step_percentiles() -> None:
    measured = step(3.0, [float(i) for i in range(1, 101)])
    assert measured.paging_mb_per_s == 3.0
    assert measured.p50_ms == pytest.approx(50.5)
    assert measured.p99_ms == pytest.approx(99.01)


def test_profile_round_trip_and_validation(tmp_path: Path) -> None:
    profile = Profile("m", 100.0, 12.5, (s(0, 20), s(10, 60)), "sim")
    assert Profile.load(profile.save(tmp_path)) == profile
    raw = json.loads(profile.to_json())
    assert set(raw) == {"model", "slo_p99_ms", "threshold_mb_per_s", "steps", "platform"}
    assert set(raw["steps"][0]) == {"paging_mb_per_s", "p50_ms", "p90_ms", "p95_ms", "p99_ms"}
    with pytest.raises(ProfileError, match="platform"):
        Profile.from_json(json.dumps({**raw, "platform": "tdx"}))
    with pytest.raises(ProfileError, match="malformed"):
        Profile.from_json('{"model": "m"}')


def test_small_real_profile_run(tmp_path: Path) -> None:
    """A real replica and real stressor processes on a 12 MiB pool, few requests per step."""
    model = Path(__file__).parents[2] / "services/model_server/zoo/mobilenet_v1_int8.tflite"
    out = tmp_path / "profiles"
    code = profiler_main.main([
        "--model", "mobilenet_v1_int8", "--model-file", str(model), "--requests", "25",
        "--rates-mib-s", "0,40", "--usable-mib", "12",
        "--state-dir", str(tmp_path), "--out", str(out), "--warmup-s", "0.5",
    ])  # fmt: skip
    assert code == 0
    profile = Profile.load(out / "mobilenet_v1_int8.json")
    assert profile.slo_p99_ms == 100.0
    assert len(profile.steps) == 2
    calm, stressed = profile.steps
    assert calm.paging_mb_per_s == 0.0  # the replica alone fits: no paging at all
    assert stressed.paging_mb_per_s > 1.0  # the stressor makes the node page
    assert (out / "mobilenet_v1_int8.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
