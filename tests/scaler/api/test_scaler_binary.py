"""The `scaler` binary end to end: flags, real HAProxy backend, gRPC status,
/metrics, sim-mode logging — started blind (Prometheus unreachable)."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import grpc

from s3ml.scaler.v1 import scaler_pb2, scaler_pb2_grpc
from services.loopback.ports import kernel_port
from tests.scaler.backends.haproxy_harness import DummyReplica, haproxy

MODEL = "mobilenet_v1_int8"
BINARY = Path(__file__).absolute().parents[3] / "services" / "scaler" / "scaler"


def test_binary_serves_status_and_reports_blindness(tmp_path: Path) -> None:
    replicas = [DummyReplica(f"node-{i}-{MODEL}").start() for i in range(2)]
    metrics_port = kernel_port()
    with haproxy(tmp_path, MODEL, replicas) as (sock, _):
        proc = subprocess.Popen(
            [
                str(BINARY),
                "--backend=local",
                f"--haproxy-socket={sock}",
                "--prometheus-url=http://127.0.0.1:1",
                "--interval=0.2",
                f"--model={MODEL}",
                "--listen=127.0.0.1:0",
                f"--metrics-listen=127.0.0.1:{metrics_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert ready.startswith("READY port="), ready
            port = int(ready.strip().split("=")[1])
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = scaler_pb2_grpc.ScalerStub(channel)
                deadline = time.monotonic() + 15
                status = stub.GetStatus(scaler_pb2.GetStatusRequest())
                while not status.blind and time.monotonic() < deadline:
                    time.sleep(0.2)
                    status = stub.GetStatus(scaler_pb2.GetStatusRequest())
            assert status.blind
            assert status.backend == "local"
            assert [e.weight for e in status.endpoints] == [1, 1]
            assert [s.model for s in status.slos] == [MODEL]
            assert status.slos[0].p99_ms == 100.0
            assert status.decisions[-1].action == "blind"
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            with urllib.request.urlopen(url, timeout=3) as resp:
                assert "s3ml_scaler_blind 1.0" in resp.read().decode()
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
    for r in replicas:
        r.close()
    assert proc.returncode == 0
    assert "scaler platform=SIMULATED-SGX" in err
    assert "blind" in err
