"""Per-request spans and Prometheus metrics of the model server, without tensor contents."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.model_server.harness import serving

EXPORTER = InMemorySpanExporter()
_provider = TracerProvider()
_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
trace.set_tracer_provider(_provider)
MODEL = "mobilenet_v1_int8"


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


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
    assert _sample("s3ml_inference_requests_total", {"model": MODEL, "code": "OK"}) == ok_before + 1
    assert (
        _sample("s3ml_inference_requests_total", {"model": MODEL, "code": "INVALID_ARGUMENT"})
        == bad_before + 1
    )
    assert _sample("s3ml_inference_latency_seconds_count", {"model": MODEL}) >= 2
    assert _sample("s3ml_inference_in_flight", {}) == 0
    spans = [s for s in EXPORTER.get_finished_spans() if s.name == "model_server.infer"]
    assert spans
    attributes = dict(spans[0].attributes or {})
    assert attributes["s3ml.model"] == MODEL
    assert attributes["s3ml.platform"] == "sim"
    assert attributes["s3ml.node"] == "node-1"
    dumped = "".join(span.to_json() for span in EXPORTER.get_finished_spans())
    assert pixels.tobytes()[:64].hex() not in dumped
