"""The per-component HTTP endpoint: metrics, liveness and readiness, over real HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import Counter

from services.telemetry import health

PROBED = Counter("s3ml_test_probe_total", "a metric the endpoint must expose")


@pytest.fixture
def endpoint() -> Iterator[tuple[str, health.Health]]:
    probes = health.Health("test-component", simulated=True)
    server = health.serve("127.0.0.1:0", probes)
    yield f"http://127.0.0.1:{server.server_address[1]}", probes
    server.shutdown()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_live_before_ready_and_ready_after(endpoint: tuple[str, health.Health]) -> None:
    base, probes = endpoint
    code, body = _get(base + "/healthz")
    assert code == 200
    assert json.loads(body) == {"component": "test-component", "status": "ok", "simulated": True}
    code, body = _get(base + "/readyz")
    assert code == 503
    assert json.loads(body)["reason"] == "starting"
    probes.ready()
    assert _get(base + "/readyz")[0] == 200
    probes.not_ready("shutting down")
    code, body = _get(base + "/readyz")
    assert (code, json.loads(body)["reason"]) == (503, "shutting down")


def test_metrics_and_unknown_paths(endpoint: tuple[str, health.Health]) -> None:
    base, _ = endpoint
    PROBED.inc()
    code, body = _get(base + "/metrics")
    assert code == 200
    assert b"s3ml_test_probe_total 1.0" in body
    assert _get(base + "/nothing")[0] == 404
