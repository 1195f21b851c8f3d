"""The C++ load generator, over both its transports, against a real echo server on loopback.

It must complete calls (also in blocks on one kept connection, for the serving
bench's raw/s3ml interleaving), report plausible latencies and counts, count only the
measured window, refuse a server whose certificate it cannot verify, report a
call the server fails, and speak plaintext HTTP/2 to a server without TLS. Its
companion tlsfloor (bare TLS round trips) must move the bytes it is told to.
"""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Iterator

import numpy as np
import pytest

from bench import echo, load, native_load
from bench.load import Target, request
from services.attest import mtls
from services.model_server.server import _peer_policy
from tests.model_server import native_harness

REQ = request("m", np.zeros((1, 128, 128, 3), np.uint8), "UINT8")
TRANSPORTS = pytest.mark.parametrize("transport", ["h2", "grpc"])


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    pki = echo.make_pki()
    proc, port = echo.start(pki)
    yield Target(f"127.0.0.1:{port}", (pki.ca_pem, *pki.client), echo.SERVER_NAME, proc.pid)
    proc.terminate()
    proc.join(30)


@pytest.fixture(scope="module")
def plaintext() -> Iterator[Target]:
    proc, port = echo.start(None)
    yield Target(f"127.0.0.1:{port}", None, pid=proc.pid)
    proc.terminate()
    proc.join(30)


@TRANSPORTS
def test_sequential_latencies(target: Target, transport: native_load.Transport) -> None:
    latencies = native_load.sequential(target, REQ, 50, warmup=5, transport=transport)
    assert len(latencies) == 50
    assert all(0 < s < 1.0 for s in latencies)


@TRANSPORTS
def test_a_session_answers_block_after_block(
    target: Target, transport: native_load.Transport
) -> None:
    with native_load.session(target, REQ, warmup=2, transport=transport) as calls:
        first, second = calls(5), calls(3)
    assert len(first) == 5
    assert len(second) == 3
    assert all(0 < s < 1.0 for s in first + second)


def test_a_session_reports_a_failed_call(target: Target) -> None:
    missing = request("missing", np.zeros((1, 4), np.uint8), "UINT8")
    with (
        pytest.raises(RuntimeError, match="could not warm up"),
        native_load.session(target, missing, warmup=1),
    ):
        pass
    with (
        native_load.session(target, missing, warmup=0) as calls,
        pytest.raises(RuntimeError, match=r"calls to .* failed"),
    ):
        calls(1)


def test_the_python_client_session_answers_blocks(target: Target) -> None:
    with load.session(target, REQ, warmup=1) as calls:
        assert len(calls(4)) == 4
        assert len(calls(2)) == 2


@pytest.fixture(scope="module")
def native_plane() -> Iterator[Target]:
    """s3ml's data plane, which allows 1 MiB DATA frames (gRPC's echo allows 16 KiB)."""
    pki = native_harness.make_pki()
    policy = _peer_policy(mtls.RevocationList())
    running = native_harness.launch(native_harness.start_message(pki, policy))
    client = (pki.ca_pem, pki.client.key_pem, pki.client.cert_pem)
    yield Target(f"127.0.0.1:{running.port}", client, native_harness.SERVER_NAME)
    running.stop()


def test_h2_sends_a_big_tensor_in_large_frames_the_server_answers(native_plane: Target) -> None:
    """The plane allows 1 MiB DATA frames, so h2call sends this 197 KB body as one frame
    written straight from the message (its large-frame path): a byte out of place would
    fail the call (INVALID_ARGUMENT or INTERNAL), and the run with it."""
    batch = request(native_harness.MODEL, np.full((4, 128, 128, 3), 90, np.uint8), "UINT8")
    assert len(native_load.sequential(native_plane, batch, 5, warmup=1)) == 5
    with native_load.session(native_plane, batch, warmup=1) as calls:
        assert len(calls(3)) == 3


@TRANSPORTS
def test_throughput_counts_the_window_and_the_cpu(
    target: Target, transport: native_load.Transport
) -> None:
    run = native_load.measured_throughput(target, REQ, 4, 1.0, transport=transport)
    assert run.per_s > 50  # an echo on loopback answers thousands per second
    assert 0 < run.client_cpu_ms < 10
    assert 0 < run.server_cpu_ms < 50


@TRANSPORTS
def test_untrusted_server_refused(target: Target, transport: native_load.Transport) -> None:
    other = echo.make_pki()  # a CA that did not sign the server's certificate
    assert target.tls is not None
    _, key, cert = target.tls
    stranger = Target(target.address, (other.ca_pem, key, cert), echo.SERVER_NAME)
    with pytest.raises(RuntimeError, match="could not reach"):
        native_load.measured_throughput(stranger, REQ, 1, 0.5, transport=transport)


def test_h2_checks_the_server_name(target: Target) -> None:
    assert target.tls is not None
    impostor = Target(target.address, target.tls, "someone-else.s3ml.local")
    with pytest.raises(RuntimeError, match="could not reach"):
        native_load.measured_throughput(impostor, REQ, 1, 0.5)


@TRANSPORTS
def test_a_failed_call_fails_the_run(target: Target, transport: native_load.Transport) -> None:
    missing = request("missing", np.zeros((1, 4), np.uint8), "UINT8")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        native_load.sequential(target, missing, 1, warmup=0, transport=transport)
    assert "model missing is not served" in str(failed.value.stderr)


def test_h2_speaks_plaintext_to_a_server_without_tls(plaintext: Target) -> None:
    latencies = native_load.sequential(plaintext, REQ, 20, warmup=2)
    assert len(latencies) == 20
    assert native_load.measured_throughput(plaintext, REQ, 2, 0.5).per_s > 50


def test_tls_floor_moves_the_bytes_it_is_given() -> None:
    small = native_load.tls_floor(1024, 1024, 20, warmup=2)
    big = native_load.tls_floor(32 << 20, 1024, 3, warmup=1)  # 32 MiB: tens of ms of AES-GCM
    assert len(small) == 20
    assert len(big) == 3
    assert 0 < statistics.median(small) < min(big) < 5.0


def test_tls_floor_includes_the_busy_time() -> None:
    busy = native_load.tls_floor(1024, 1024, 5, warmup=1, busy_s=0.02)
    assert all(0.02 <= s < 1.0 for s in busy)


def test_tls_floor_refuses_an_empty_payload() -> None:
    with pytest.raises(subprocess.CalledProcessError) as refused:
        native_load.tls_floor(0, 1024, 1)
    assert "between 1 and 1 GiB" in str(refused.value.stderr)
