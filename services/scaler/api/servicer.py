"""Thin gRPC servicer of s3ml.scaler.v1.Scaler over the controller."""

from __future__ import annotations

import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from s3ml.common.v1 import platform_pb2
from s3ml.scaler.v1 import scaler_pb2, scaler_pb2_grpc
from services.rpc.status import CodeTable
from services.scaler.controller.controller import Controller
from services.scaler.controller.errors import (
    LastEndpointError,
    NoCapacityError,
    UnknownEndpointError,
    UnknownModelError,
)
from services.scaler.controller.ports import BackendError
from services.scaler.controller.state import Decision, Endpoint, ModelSlo, NodeEpc

CODES: CodeTable = [
    (UnknownEndpointError, grpc.StatusCode.NOT_FOUND),
    (UnknownModelError, grpc.StatusCode.NOT_FOUND),
    (LastEndpointError, grpc.StatusCode.FAILED_PRECONDITION),
    (NoCapacityError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (BackendError, grpc.StatusCode.UNAVAILABLE),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
]
SIM_WARNING = "SIMULATED EPC: paging is measured on a software EPC pool, not SGX hardware"
DEFAULT_DECISIONS = 50


def node_pb(n: NodeEpc) -> scaler_pb2.NodeEpc:
    return scaler_pb2.NodeEpc(
        node=n.node,
        epc_bytes=n.epc_bytes,
        pages_in_use=n.pages_in_use,
        paging_mb_per_s=n.paging_mb_per_s,
        enclaves=n.enclaves,
        foreign_enclaves=n.foreign_enclaves,
        metrics_fresh=n.fresh,
    )


def endpoint_pb(e: Endpoint) -> scaler_pb2.Endpoint:
    return scaler_pb2.Endpoint(
        id=e.id, model=e.model, node=e.node, address=e.address, weight=e.weight,
        counter=e.counter, pinned=e.pinned, healthy=e.healthy,
    )  # fmt: skip


def slo_pb(s: ModelSlo) -> scaler_pb2.ModelSlo:
    return scaler_pb2.ModelSlo(
        model=s.model,
        p99_ms=s.p99_ms,
        paging_threshold_mb_per_s=s.threshold_mb_per_s,
        intervals_over_threshold=s.intervals_over_threshold,
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
    )


def decision_pb(d: Decision) -> scaler_pb2.Decision:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(d.time * 1e9))
    return scaler_pb2.Decision(time=stamp, action=d.action, target=d.target, reason=d.reason)


def slo_from_pb(s: scaler_pb2.ModelSlo) -> ModelSlo:
    """Unset (zero) N and bounds take the controller's defaults; SLO and TH are required."""
    defaults = ModelSlo("defaults", 1.0, 1.0)
    return ModelSlo(
        model=s.model,
        p99_ms=s.p99_ms,
        threshold_mb_per_s=s.paging_threshold_mb_per_s,
        intervals_over_threshold=s.intervals_over_threshold or defaults.intervals_over_threshold,
        min_replicas=s.min_replicas or defaults.min_replicas,
        max_replicas=s.max_replicas or max(defaults.max_replicas, s.min_replicas),
    )


class ScalerServicer(scaler_pb2_grpc.ScalerServicer):
    def __init__(self, controller: Controller, simulated: bool) -> None:
        self._controller = controller
        self._simulated = simulated
        self._started = time.time()

    def GetStatus(
        self, request: scaler_pb2.GetStatusRequest, context: grpc.ServicerContext
    ) -> scaler_pb2.ScalerStatus:
        st = self._controller.status(request.decisions or DEFAULT_DECISIONS)
        platform = (
            platform_pb2.PLATFORM_SIM if self._simulated else platform_pb2.PLATFORM_GRAMINE_SGX
        )
        return scaler_pb2.ScalerStatus(
            component=platform_pb2.ComponentStatus(
                component="scaler",
                version="0.1.0",
                platform=platform,
                platform_warning=SIM_WARNING if self._simulated else "",
                uptime_seconds=time.time() - self._started,
            ),
            nodes=[node_pb(n) for n in st.nodes],
            endpoints=[endpoint_pb(e) for e in st.endpoints],
            slos=[slo_pb(s) for s in st.slos],
            decisions=[decision_pb(d) for d in st.decisions],
            blind=st.blind,
            backend=st.backend,
        )

    def SetModelSlo(
        self, request: scaler_pb2.SetModelSloRequest, context: grpc.ServicerContext
    ) -> scaler_pb2.ModelSlo:
        if not request.HasField("slo"):
            raise ValueError("slo is required")
        return slo_pb(self._controller.set_slo(slo_from_pb(request.slo)))

    def SetEndpointWeight(
        self, request: scaler_pb2.SetEndpointWeightRequest, context: grpc.ServicerContext
    ) -> scaler_pb2.Endpoint:
        if request.release:
            return endpoint_pb(self._controller.release(request.endpoint_id))
        return endpoint_pb(self._controller.pin(request.endpoint_id, request.weight))

    def Scale(
        self, request: scaler_pb2.ScaleRequest, context: grpc.ServicerContext
    ) -> scaler_pb2.ScaleResponse:
        endpoints = self._controller.scale(request.model, request.replicas)
        return scaler_pb2.ScaleResponse(endpoints=[endpoint_pb(e) for e in endpoints])
