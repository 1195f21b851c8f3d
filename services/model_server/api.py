"""The KServe v2 GRPCInferenceService servicer: thin, over the registry and pools.

Status codes (one table, CODES): unknown model or version -> NOT_FOUND; input
that does not match the model -> INVALID_ARGUMENT (names the tensor);
queue full -> RESOURCE_EXHAUSTED (retry with backoff); deadline passed ->
DEADLINE_EXCEEDED; not provisioned -> UNAVAILABLE.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import grpc
from opentelemetry import trace
from prometheus_client import Counter, Gauge, Histogram

from inference import grpc_predict_v2_pb2 as pb
from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from services.model_server import tensors
from services.model_server.errors import (
    DeadlineError,
    InvalidInputError,
    ModelNotFoundError,
    NotReadyError,
    OverloadedError,
)
from services.model_server.repository import LoadedModel, Registry
from services.model_server.tensor_spec import TensorSpec
from services.rpc.status import CodeTable
from services.scaler.epc.enclave_memory import EnclaveMemory, NoEpc

CODES: CodeTable = [
    (ModelNotFoundError, grpc.StatusCode.NOT_FOUND),
    (InvalidInputError, grpc.StatusCode.INVALID_ARGUMENT),
    (OverloadedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (DeadlineError, grpc.StatusCode.DEADLINE_EXCEEDED),
    (NotReadyError, grpc.StatusCode.UNAVAILABLE),
]
VERSION = "0.1.0"
MAX_WAIT_SECONDS = 86400.0

REQUESTS = Counter("s3ml_inference_requests_total", "ModelInfer calls", ["model", "code"])
LATENCY = Histogram(
    "s3ml_inference_latency_seconds",
    "ModelInfer latency inside the server",
    ["model"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
IN_FLIGHT = Gauge("s3ml_inference_in_flight", "ModelInfer calls being served")
QUEUE_DEPTH = Gauge("s3ml_inference_queue_depth", "ModelInfer calls waiting for an interpreter")
_tracer = trace.get_tracer("s3ml.model_server")


@dataclass(frozen=True)
class Identity:
    """Where this replica runs, for spans and metadata."""

    node: str
    replica: str
    platform: str


INFER_SPAN = "model_server.infer"


def infer_attributes(model: str, version: str, me: Identity) -> dict[str, str]:
    """What an inference span says: the model and where it ran (never tensor contents)."""
    return {
        "s3ml.model": model,
        "s3ml.model_version": version,
        "s3ml.node": me.node,
        "s3ml.replica": me.replica,
        "s3ml.platform": me.platform,
    }


class Admission:
    """Bounds in-flight work: beyond `interpreters + queue` calls, refuse early."""

    def __init__(self, interpreters: int, queue: int) -> None:
        self._interpreters = interpreters
        self._limit = interpreters + queue
        self._in_flight = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            if self._in_flight >= self._limit:
                raise OverloadedError(
                    f"server busy: {self._in_flight} requests in flight (limit {self._limit}); "
                    "retry with backoff"
                )
            self._in_flight += 1
            depth = max(0, self._in_flight - self._interpreters)
        IN_FLIGHT.inc()
        QUEUE_DEPTH.set(depth)

    def leave(self) -> None:
        with self._lock:
            self._in_flight -= 1
            depth = max(0, self._in_flight - self._interpreters)
        IN_FLIGHT.dec()
        QUEUE_DEPTH.set(depth)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(
        self,
        registry: Registry,
        admission: Admission,
        me: Identity,
        max_batch: int,
        epc: EnclaveMemory | None = None,
    ) -> None:
        self._registry = registry
        self._epc = epc or NoEpc()
        self._admission = admission
        self._me = me
        self._max_batch = max_batch

    def ServerLive(
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    def ServerReady(
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=bool(self._registry.all()))

    def ModelReady(
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        self._registry.get(request.name, request.version)
        return pb.ModelReadyResponse(ready=True)

    def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="s3ml-model-server", version=VERSION, extensions=[])

    def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        model = self._registry.get(request.name, request.version)
        info = model.info

        def meta(spec: TensorSpec) -> pb.ModelMetadataResponse.TensorMetadata:
            return pb.ModelMetadataResponse.TensorMetadata(
                name=spec.name, datatype=spec.datatype, shape=list(spec.shape)
            )

        return pb.ModelMetadataResponse(
            name=info.name,
            versions=self._registry.versions(info.name),
            platform=info.platform,
            inputs=[meta(s) for s in info.inputs],
            outputs=[meta(s) for s in info.outputs],
        )

    def ModelInfer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        started = time.perf_counter()
        label = "unknown"
        code = "OK"
        try:
            model = self._registry.get(request.model_name, request.model_version)
            label = model.info.name
            with _tracer.start_as_current_span(
                INFER_SPAN,
                attributes=infer_attributes(model.info.name, model.info.version, self._me),
            ):
                return self._infer(request, context, model)
        except Exception as err:
            code = next((c.name for kind, c in CODES if isinstance(err, kind)), "INTERNAL")
            raise
        finally:
            REQUESTS.labels(label, code).inc()
            LATENCY.labels(label).observe(time.perf_counter() - started)

    def _infer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext, model: LoadedModel
    ) -> pb.ModelInferResponse:
        info = model.info
        inputs = tensors.decode_inputs(request, info.inputs, self._max_batch)
        wanted = tensors.requested_outputs(request, info.outputs)
        remaining: float | None = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise DeadlineError("deadline passed before inference started")
        if remaining is not None and remaining > MAX_WAIT_SECONDS:
            remaining = None  # no deadline set: gRPC reports "infinity"
        self._admission.enter()
        try:
            # sim EPC: the working set pages in while the interpreter runs, paying the cost
            outputs = model.pool.run(inputs, remaining, self._epc.touch)
        finally:
            self._admission.leave()
        response = pb.ModelInferResponse(
            model_name=info.name, model_version=info.version, id=request.id
        )
        tensors.encode_outputs(response, info.outputs, outputs, wanted)
        return response
