"""Per-request spans and Prometheus metrics of the model server, without tensor contents.

Runs once per data plane (telemetry_test_native): the native plane reports its
calls and counters to the supervisor, which makes the same spans and metrics.
"""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import REGISTRY

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from services.telemetry.propagation import traced_channel
from tests.model_server.harness import serving

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)
MODEL = "mobilenet_v1_int8"


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def _await_sample(name: str, labels: dict[str, str], want: float) -> None:
    """The native plane reports its counters about once a second."""
    deadline = time.monotonic() + 10
    while (got := _sample(name, labels)) != want:
        assert time.monotonic() < deadline, f"{name}{labels} = {got}, expected {want}"
        time.sleep(0.05)


def _finished(name: str) -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.name == name]


def test_spans_and_metrics(tmp_path: Path) -> None:
    pixels = np.arange(128 * 128 * 3, dtype=np.uint32).astype(np.uint8).reshape(1, 128, 128, 3)
    ok_before = _sample("s3ml_inference_requests_total", {"model": MODEL, "code": "OK"})
    bad_before = _sample(
        "s3ml_inference_requests_total", {"model": MODEL, "code": "INVALID_ARGUMENT"}
    )
    with serving(tmp_path, (MODEL,)) as s, s.channel() as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        request = pb.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="image", datatype="UINT8", shape=[1, 128, 128, 3])
        request.raw_input_contents.append(pixels.tobytes())
        stub.ModelInfer(request, timeout=10)
        bad = pb.ModelInferRequest(model_name=MODEL)
        bad.inputs.add(name="image", datatype="FP32", shape=[1, 128, 128, 3])
        with pytest.raises(grpc.RpcError):
            stub.ModelInfer(bad, timeout=10)
        requests = "s3ml_inference_requests_total"
        _await_sample(requests, {"model": MODEL, "code": "OK"}, ok_before + 1)
        _await_sample(requests, {"model": MODEL, "code": "INVALID_ARGUMENT"}, bad_before + 1)
        assert _sample("s3ml_inference_latency_seconds_count", {"model": MODEL}) >= 2
        assert _sample("s3ml_inference_in_flight", {}) == 0
    spans = _finished("model_server.infer")
    assert len(spans) >= 2
    assert {s.status.status_code for s in spans[-2:]} == {StatusCode.UNSET, StatusCode.ERROR}
    attributes = dict(spans[0].attributes or {})
    assert attributes["s3ml.model"] == MODEL
    assert attributes["s3ml.platform"] == "sim"
    assert attributes["s3ml.node"] == "node-1"
    dumped = "".join(span.to_json() for span in EXPORTER.get_finished_spans())
    assert pixels.tobytes()[:64].hex() not in dumped


def test_one_trace_from_client_through_server(tmp_path: Path) -> None:
    """The client's span is the parent of the server's, which parents the inference span."""
    pixels = np.zeros((1, 128, 128, 3), dtype=np.uint8)
    with serving(tmp_path, (MODEL,)) as s, s.channel() as channel:
        EXPORTER.clear()
        stub = pb_grpc.GRPCInferenceServiceStub(traced_channel(channel))
        request = pb.ModelInferRequest(model_name=MODEL)
        request.inputs.add(name="image", datatype="UINT8", shape=[1, 128, 128, 3])
        request.raw_input_contents.append(pixels.tobytes())
        stub.ModelInfer(request, timeout=10)
    spans = {span.name: span for span in EXPORTER.get_finished_spans()}
    method = "/inference.GRPCInferenceService/ModelInfer"
    client, server = spans[f"rpc.client {method}"], spans[f"rpc.server {method}"]
    infer = spans["model_server.infer"]
    assert client.context is not None
    assert server.context is not None
    assert server.parent is not None
    assert infer.parent is not None
    assert server.context.trace_id == client.context.trace_id == infer.context.trace_id
    assert server.parent.span_id == client.context.span_id
    assert infer.parent.span_id == server.context.span_id
    # The server's spans lie inside the client's (same machine, same clock).
    starts = [client.start_time, server.start_time, infer.start_time]
    ends = [infer.end_time, server.end_time, client.end_time]
    assert None not in starts
    assert None not in ends
    assert starts == sorted(starts)  # type: ignore[type-var]
    assert ends == sorted(ends)  # type: ignore[type-var]
