"""Smoke test of the scaler benches (--quick): the whole wiring on a real local cluster.

Real ACS, attested replicas, HAProxy, Prometheus, exporters, stressor and
controller; only the run lengths are cut, so the numbers are not asserted
against the paper's targets, only for being measured and well formed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import scalability, table3


def _result(out: str) -> dict[str, float]:
    last = out.strip().splitlines()[-1]
    assert last.startswith("RESULT "), last
    return {k: float(v) for k, v in re.findall(r"(\S+)=(\S+)", last)}


def test_table3_quick(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert table3.main(["--quick", "--out", str(tmp_path)]) == 0
    result = _result(capsys.readouterr().out)
    model = "mobilenet_v1_f32"
    for key in ("p99_rr_ms", "p99_lc_ms", "p99_s3ml_ms", "th_mb_s"):
        assert result[f"{model}_{key}"] > 0
    assert result["min_p99_reduction_vs_rr_pct"] == result[f"{model}_reduction_vs_rr_pct"]
    assert result["slo_violations"] in (0.0, 1.0)
    assert (tmp_path / f"{model}.png").stat().st_size > 10_000


def test_scalability_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert scalability.main(["--quick"]) == 0
    result = _result(capsys.readouterr().out)
    for count in (1, 2, 3):
        assert result[f"mobilenet_v1_f32_{count}r_per_s"] > 0
    assert result["mobilenet_v1_f32_3r_vs_1r"] > 0
