"""s3ml.scaler.v1 over real gRPC on loopback: a controller driving a real HAProxy.

Metrics come from a fixed snapshot (the Prometheus path has its own test in
tests/scaler/controller); everything else is real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from s3ml.common.v1 import platform_pb2
from s3ml.scaler.v1 import scaler_pb2, scaler_pb2_grpc
from services.rpc.status import ErrorMappingInterceptor
from services.scaler.api.render import status_text
from services.scaler.api.servicer import CODES, ScalerServicer
from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller.controller import Controller, ControllerConfig
from services.scaler.controller.ports import Replica
from services.scaler.controller.prometheus import Snapshot
from services.scaler.controller.state import ModelSlo, NodeEpc
from tests.scaler.backends.haproxy_harness import DummyReplica, haproxy

MODEL = "mobilenet_v1_int8"
MIB = 1 << 20
EP0 = f"{MODEL}_replicas/node-0-{MODEL}"
EP1 = f"{MODEL}_replicas/node-1-{MODEL}"


class FixedMetrics:
    """Node EPC as Prometheus would report it; node-2 is empty and calm."""

    def __init__(self) -> None:
        self.nodes = {
            n: NodeEpc(n, int(93.5 * MIB), pages_in_use=used * 256, paging_mb_per_s=paging)
            for n, used, paging in (("node-0", 80, 150.0), ("node-1", 40, 1.0), ("node-2", 5, 0.0))
        }

    def read(self) -> Snapshot:
        return Snapshot(dict(self.nodes), {MODEL: 3.0})


class Launcher:
    def __init__(self) -> None:
        self.replicas: list[DummyReplica] = []
        self.stopped: list[str] = []

    def start(self, model: str, node: str) -> Replica:
        self.replicas.append(DummyReplica(f"{node}-{model}-{len(self.replicas)}").start())
        return Replica(self.replicas[-1].name, self.replicas[-1].address)

    def stop(self, model: str, node: str, name: str) -> None:
        self.stopped.append(name)


@dataclass
class Rig:
    stub: scaler_pb2_grpc.ScalerStub
    api: RuntimeApi
    metrics: FixedMetrics
    controller: Controller


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    replicas = [DummyReplica(f"node-{i}-{MODEL}").start() for i in range(2)]
    launcher, metrics = Launcher(), FixedMetrics()
    with haproxy(tmp_path, MODEL, replicas) as (sock, _):
        api = RuntimeApi(sock)
        slo = ModelSlo(MODEL, 100.0, 50.0, intervals_over_threshold=2, max_replicas=3)
        controller = Controller(
            HaproxyBackend(api, launcher), metrics, {MODEL: slo}, ControllerConfig(autoscale=False)
        )
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=2),
            interceptors=[ErrorMappingInterceptor(CODES)],
        )
        scaler_pb2_grpc.add_ScalerServicer_to_server(ScalerServicer(controller, True), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        controller.tick()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Rig(scaler_pb2_grpc.ScalerStub(channel), api, metrics, controller)
        server.stop(0)
    for r in replicas + launcher.replicas:
        r.close()


def weights(api: RuntimeApi) -> dict[str, int]:
    return {f"{s.backend}/{s.server}": s.weight for s in api.servers()}


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as err:
        call()
    code: grpc.StatusCode = err.value.code()
    return code


def test_status_shows_nodes_endpoints_slos_and_decisions(rig: Rig) -> None:
    stub = rig.stub
    stub.GetStatus(scaler_pb2.GetStatusRequest())
    status = stub.GetStatus(scaler_pb2.GetStatusRequest())
    assert status.component.platform == platform_pb2.PLATFORM_SIM
    assert "SIMULATED" in status.component.platform_warning
    assert status.backend == "local"
    assert not status.blind
    assert [(n.node, n.metrics_fresh) for n in status.nodes] == [
        ("node-0", True),
        ("node-1", True),
        ("node-2", True),
    ]
    assert status.nodes[0].paging_mb_per_s == 150.0
    assert [(e.id, e.node, e.weight, e.counter) for e in status.endpoints] == [
        (EP0, "node-0", 1, 1),
        (EP1, "node-1", 1, 0),
    ]
    assert status.slos[0].paging_threshold_mb_per_s == 50.0
    text = status_text(status)
    assert "backend=local  ok" in text
    assert f"{EP0}" in text
    assert "paging    150.0 MB/s" in text


def test_algorithm1_decision_appears_with_reason(rig: Rig) -> None:
    stub, api = rig.stub, rig.api
    rig.controller.tick()  # the second interval over TH (N=2) takes node-0 out
    status = stub.GetStatus(scaler_pb2.GetStatusRequest(decisions=5))
    assert weights(api)[EP0] == 0
    decision = status.decisions[-1]
    assert decision.action == "weight"
    assert decision.target == EP0
    assert "out of rotation" in decision.reason
    assert decision.time.seconds > 0


def test_pin_release_and_the_error_table(rig: Rig) -> None:
    stub, api = rig.stub, rig.api
    pinned = stub.SetEndpointWeight(scaler_pb2.SetEndpointWeightRequest(endpoint_id=EP1, weight=0))
    assert pinned.pinned
    assert pinned.weight == 0
    assert weights(api)[EP1] == 0
    last = scaler_pb2.SetEndpointWeightRequest(endpoint_id=EP0, weight=0)
    assert code_of(lambda: stub.SetEndpointWeight(last)) == grpc.StatusCode.FAILED_PRECONDITION
    assert weights(api)[EP0] == 1
    unknown = scaler_pb2.SetEndpointWeightRequest(endpoint_id="x/y", weight=1)
    assert code_of(lambda: stub.SetEndpointWeight(unknown)) == grpc.StatusCode.NOT_FOUND
    too_big = scaler_pb2.SetEndpointWeightRequest(endpoint_id=EP1, weight=999)
    assert code_of(lambda: stub.SetEndpointWeight(too_big)) == grpc.StatusCode.INVALID_ARGUMENT
    released = stub.SetEndpointWeight(
        scaler_pb2.SetEndpointWeightRequest(endpoint_id=EP1, release=True)
    )
    assert not released.pinned


def test_set_model_slo_validates(rig: Rig) -> None:
    stub = rig.stub
    slo = scaler_pb2.ModelSlo(model=MODEL, p99_ms=80.0, paging_threshold_mb_per_s=30.0)
    got = stub.SetModelSlo(scaler_pb2.SetModelSloRequest(slo=slo))
    assert got.intervals_over_threshold == 3
    assert got.min_replicas == 1
    status = stub.GetStatus(scaler_pb2.GetStatusRequest())
    assert status.slos[0].p99_ms == 80.0
    bad = scaler_pb2.ModelSlo(model=MODEL, p99_ms=-1.0, paging_threshold_mb_per_s=30.0)
    req = scaler_pb2.SetModelSloRequest(slo=bad)
    assert code_of(lambda: stub.SetModelSlo(req)) == grpc.StatusCode.INVALID_ARGUMENT
    empty = scaler_pb2.SetModelSloRequest()
    assert code_of(lambda: stub.SetModelSlo(empty)) == grpc.StatusCode.INVALID_ARGUMENT


def test_scale_adds_on_free_epc_and_reports_exhaustion(rig: Rig) -> None:
    stub, api, metrics = rig.stub, rig.api, rig.metrics
    grown = stub.Scale(scaler_pb2.ScaleRequest(model=MODEL, replicas=3))
    assert sorted(e.node for e in grown.endpoints) == ["node-0", "node-1", "node-2"]
    assert f"{MODEL}_replicas/node-2-{MODEL}-0" in weights(api)
    shrunk = stub.Scale(scaler_pb2.ScaleRequest(model=MODEL, replicas=2))
    assert len(shrunk.endpoints) == 2
    assert EP0 not in weights(api), "the node paging the most is removed first"
    unknown = scaler_pb2.ScaleRequest(model="nope", replicas=1)
    assert code_of(lambda: stub.Scale(unknown)) == grpc.StatusCode.NOT_FOUND
    bounds = scaler_pb2.ScaleRequest(model=MODEL, replicas=9)
    assert code_of(lambda: stub.Scale(bounds)) == grpc.StatusCode.INVALID_ARGUMENT
    for node in metrics.nodes:
        metrics.nodes[node] = NodeEpc(node, int(93.5 * MIB), pages_in_use=90 * 256)
    rig.controller.tick()
    full = scaler_pb2.ScaleRequest(model=MODEL, replicas=3)
    assert code_of(lambda: stub.Scale(full)) == grpc.StatusCode.RESOURCE_EXHAUSTED
