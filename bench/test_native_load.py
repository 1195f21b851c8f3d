"""The C++ load generator against a real mTLS echo server on loopback.

It must complete calls, report plausible latencies and counts, count only the
measured window, and refuse a server whose certificate it cannot verify.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from bench import echo, native_load
from bench.load import Target, request

REQ = request("m", np.zeros((1, 128, 128, 3), np.uint8), "UINT8")


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    pki = echo.make_pki()
    proc, port = echo.start(pki)
    yield Target(f"127.0.0.1:{port}", (pki.ca_pem, *pki.client), echo.SERVER_NAME, proc.pid)
    proc.terminate()
    proc.join(30)


def test_sequential_latencies(target: Target) -> None:
    latencies = native_load.sequential(target, REQ, 50, warmup=5)
    assert len(latencies) == 50
    assert all(0 < s < 1.0 for s in latencies)


def test_throughput_counts_the_window_and_the_cpu(target: Target) -> None:
    run = native_load.measured_throughput(target, REQ, 4, 1.0)
    assert run.per_s > 50  # an echo on loopback answers thousands per second
    assert 0 < run.client_cpu_ms < 10
    assert 0 < run.server_cpu_ms < 50


def test_untrusted_server_refused(target: Target) -> None:
    other = echo.make_pki()  # a CA that did not sign the server's certificate
    assert target.tls is not None
    _, key, cert = target.tls
    stranger = Target(target.address, (other.ca_pem, key, cert), echo.SERVER_NAME)
    with pytest.raises(RuntimeError, match="could not reach"):
        native_load.measured_throughput(stranger, REQ, 1, 0.5)
