"""The native data plane on its own: peer policy, revocation, metrics, calls, lifecycle.

Real C++ child, real TLS on loopback, real certificates from the ACS's own CA
code (a CA created for the test, as the ACS creates its own), real CRLs. The
serving suites (serving_test_native, ...) cover the KServe API on this plane.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client import REGISTRY, generate_latest

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from s3ml.model_server.v1 import dataplane_pb2 as dp
from services.attest import mtls
from services.attest.ca import pem, utcnow
from services.model_server import dataplane
from services.model_server.server import ALLOWED_ROLES, _peer_policy
from services.scaler.epc import enclave_memory
from services.scaler.epc.pool import EpcPool
from tests.model_server.native_harness import (
    MODEL,
    SERVER_NAME,
    Pki,
    Reported,
    channel,
    launch,
    make_pki,
    model,
    start_message,
    stub_for,
)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


@pytest.fixture
def reported() -> Reported:
    return Reported()


@pytest.fixture
def plane(pki: Pki, reported: Reported) -> Iterator[dataplane.NativeDataPlane]:
    running = launch(start_message(pki, _peer_policy(mtls.RevocationList())), reported)
    yield running
    running.stop()


def _infer(
    stub: pb_grpc.GRPCInferenceServiceStub, metadata: tuple[tuple[str, str], ...] = ()
) -> pb.ModelInferResponse:
    request = pb.ModelInferRequest(model_name=MODEL)
    request.inputs.add(name="image", datatype="UINT8", shape=[1, 128, 128, 3])
    request.raw_input_contents.append(np.full((1, 128, 128, 3), 100, np.uint8).tobytes())
    return stub.ModelInfer(request, timeout=10, metadata=metadata)


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    return caught.value.code(), caught.value.details() or ""


def _served(stub: pb_grpc.GRPCInferenceServiceStub) -> bool:
    try:
        _infer(stub)
    except grpc.RpcError:
        return False
    return True


def test_serves_acs_issued_clients(plane: dataplane.NativeDataPlane, pki: Pki) -> None:
    response = _infer(stub_for(plane, pki, pki.client))
    assert response.outputs[0].shape == [1, 1000]
    assert len(response.raw_output_contents[0]) == 1000


def test_revoked_client_refused_after_crl_refresh(
    plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    stub = stub_for(plane, pki, pki.client)
    _infer(stub)
    revocations = mtls.RevocationList()
    now = utcnow()
    revocations.update(
        pki.ca.crl({pki.client.serial: now - timedelta(seconds=1)}, now), pki.ca.cert
    )
    plane.update_peers(_peer_policy(revocations))
    deadline = time.monotonic() + 5
    while _served(stub):  # the update crosses a pipe to the child
        assert time.monotonic() < deadline, "a revoked client was still served 5 s later"
        time.sleep(0.05)
    assert _code(lambda: _infer(stub)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "inference API: certificate revoked",
    )
    _infer(stub_for(plane, pki, pki.admin))  # others are unaffected


def test_role_outside_the_policy_is_permission_denied(pki: Pki) -> None:
    admins_only = dp.PeerPolicy(allowed_role_prefixes=[ALLOWED_ROLES[2]])
    running = launch(start_message(pki, admins_only))
    try:
        code, details = _code(lambda: _infer(stub_for(running, pki, pki.client)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "spiffe://s3ml/client/alice may not call this" in details
        _infer(stub_for(running, pki, pki.admin))
    finally:
        running.stop()


def test_client_without_certificate_cannot_connect(
    plane: dataplane.NativeDataPlane, pki: Pki
) -> None:
    anonymous = grpc.secure_channel(
        f"127.0.0.1:{plane.port}",
        grpc.ssl_channel_credentials(pem(pki.ca.cert)),
        [("grpc.ssl_target_name_override", SERVER_NAME)],
    )
    code, _ = _code(
        lambda: pb_grpc.GRPCInferenceServiceStub(anonymous).ServerLive(
            pb.ServerLiveRequest(), timeout=5
        )
    )
    assert code == grpc.StatusCode.UNAVAILABLE


def test_metrics_reach_the_supervisor(plane: dataplane.NativeDataPlane, pki: Pki) -> None:
    stub = stub_for(plane, pki, pki.client)
    for _ in range(3):
        _infer(stub)
    bad = pb.ModelInferRequest(model_name="nope")
    assert _code(lambda: stub.ModelInfer(bad, timeout=5))[0] == grpc.StatusCode.NOT_FOUND
    dataplane.export_metrics(plane)
    deadline = time.monotonic() + 5
    want = f's3ml_inference_requests_total{{code="OK",model="{MODEL}"}} 3.0'
    while want not in (text := generate_latest(REGISTRY).decode()):
        assert time.monotonic() < deadline, text
        time.sleep(0.1)
    assert 's3ml_inference_requests_total{code="NOT_FOUND",model="unknown"} 1.0' in text
    assert f's3ml_inference_latency_seconds_count{{model="{MODEL}"}} 3.0' in text


def test_bad_model_fails_start_with_a_reason(pki: Pki) -> None:
    broken = model()
    broken.tflite = b"not a flatbuffer" * 64
    with pytest.raises(dataplane.DataPlaneError, match="failed to start: LiteRt"):
        launch(start_message(pki, dp.PeerPolicy(), broken))


def test_silent_child_fails_start_after_the_timeout(pki: Pki, tmp_path: Path) -> None:
    hung = tmp_path / "hung"
    hung.write_text("#!/bin/sh\nexec sleep 60\n")
    os.chmod(hung, 0o700)
    begun = time.monotonic()
    with pytest.raises(dataplane.DataPlaneError, match="no answer within 1 s"):
        dataplane.NativeDataPlane(
            start_message(pki, dp.PeerPolicy()), Reported(), hung, start_timeout=1.0
        )
    assert time.monotonic() - begun < 10


def test_closing_stdin_stops_the_child(pki: Pki) -> None:
    running = launch(start_message(pki, dp.PeerPolicy()))
    assert running.running()
    assert running.exit_reason() is None
    running.stop()
    assert not running.running()
    assert running.exit_reason() == "the native data plane exited with code 0"


def test_a_dead_child_says_how_it_died(pki: Pki) -> None:
    """The replica exits on this reason (model_server.main), so its supervisor restarts it."""
    running = launch(start_message(pki, dp.PeerPolicy()))
    try:
        os.kill(running.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running.exit_reason() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.exit_reason() == "the native data plane was killed by signal 9"
    finally:
        running.stop()


def test_a_killed_supervisor_fails_no_call(pki: Pki) -> None:
    """The supervisor SIGKILLed (the cluster's kill -9 under load): the child's pipe to
    it breaks. A call on a connection it already holds is still served (its sim EPC
    touch unaccounted: no one is left to keep the pool), not failed as INTERNAL, and
    when its stdin ends too it drains and exits cleanly. The test is the supervisor,
    driving the child over the real pipes, so it can close them in this order."""
    start = start_message(pki, _peer_policy(mtls.RevocationList()))
    start.epc.account = True
    child = subprocess.Popen([str(dataplane.BINARY)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        dataplane.write_control(child.stdin, dp.Control(start=start))
        ready = next(dataplane.read_events(child.stdout))
        assert ready.HasField("ready"), ready
        with channel(ready.ready.port, pki, pki.client) as chan:
            stub = pb_grpc.GRPCInferenceServiceStub(chan)
            stub.ServerLive(pb.ServerLiveRequest(), timeout=10)  # the connection is up
            child.stdout.close()  # the supervisor's end of the events pipe is gone
            assert len(_infer(stub).outputs) == 1
        child.stdin.close()
        assert child.wait(timeout=15) == 0
    finally:
        child.kill()
        child.wait()


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_calls_are_reported_with_the_callers_trace(
    plane: dataplane.NativeDataPlane, pki: Pki, reported: Reported
) -> None:
    stub = stub_for(plane, pki, pki.client)
    _infer(stub, (("traceparent", TRACEPARENT),))
    bad = pb.ModelInferRequest(model_name=MODEL)
    bad.inputs.add(name="image", datatype="FP32", shape=[1, 128, 128, 3])
    assert _code(lambda: stub.ModelInfer(bad, timeout=5))[0] == grpc.StatusCode.INVALID_ARGUMENT
    stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
    _infer(stub, (("traceparent", "0" * 4000),))  # junk: not kept
    plane.stop()  # the child reports its last calls as it exits
    ok, invalid, live, junk = reported.calls
    assert ok.method == "/inference.GRPCInferenceService/ModelInfer"
    assert (ok.traceparent, ok.code, ok.model, ok.version) == (TRACEPARENT, "OK", MODEL, "1")
    assert ok.start_unix_nano <= ok.infer_start_unix_nano <= ok.end_unix_nano
    assert abs(ok.end_unix_nano - time.time_ns()) < 60e9
    assert (invalid.code, invalid.model, invalid.traceparent) == ("INVALID_ARGUMENT", MODEL, "")
    assert (live.method, live.code, live.model) == (
        "/inference.GRPCInferenceService/ServerLive",
        "OK",
        "",
    )
    assert (junk.code, junk.traceparent) == ("OK", "")


def test_sim_epc_paging_is_paid_inside_the_inference(pki: Pki, tmp_path: Path) -> None:
    """A pool smaller than the working set: every inference pages, the supervisor's pool
    counts it, and the child pays it (AES-GCM per page plus the per-page delay) in the call."""
    delay_us = 20.0
    start = start_message(pki, dp.PeerPolicy(allowed_role_prefixes=list(ALLOWED_ROLES)))
    start.epc.account, start.epc.extra_delay_us = True, delay_us
    running = launch(start)
    pool = EpcPool(tmp_path / "node-0.pool", "node-0", usable_bytes=1 << 20)  # 256 pages
    try:
        assert running.models_resident_bytes > 0
        size = enclave_memory.working_set(0, running.models_resident_bytes, 4096)
        memory = enclave_memory.SimEnclaveMemory.register(pool, "node-0/replica", size)
        running.account_epc_with(memory.account)
        pages = -(-size // 4096)
        assert pages > 2 * pool.usable_pages, "the working set must not fit"
        stub = stub_for(running, pki, pki.client)
        before = pool.snapshot().paged_in
        began = time.monotonic()
        for _ in range(3):
            _infer(stub)
        took = (time.monotonic() - began) / 3
        after = pool.snapshot().paged_in
        assert before is not None  # a sim pool counts its paging
        assert after is not None
        missing = pages - pool.usable_pages  # per touch: all but what stayed resident
        assert after - before >= 3 * missing
        assert took >= 0.5 * 2 * missing * delay_us / 1e6  # paged in and out, per page
    finally:
        running.stop()
        pool.close()
