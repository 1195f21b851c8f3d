"""The Kubernetes backend, driven through the real `kubernetes` client against a
FAKE API server (tests/scaler/backends/fake_kube.py): no real API server can run
here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client

from services.scaler.backends.kubernetes import KubernetesBackend
from services.scaler.controller.ports import BackendError
from tests.scaler.backends.fake_kube import Cluster, FakeApiServer

MIB = 1 << 20
NS = "s3ml"
MODEL = "mobilenet_v1_int8"
DEPLOY = "model-mobilenet-v1-int8"


@pytest.fixture
def kube() -> Iterator[tuple[KubernetesBackend, Cluster]]:
    cluster = Cluster(NS)
    for name, epc in (("node-a", 93 * MIB), ("node-b", 93 * MIB), ("node-c", 64 * MIB)):
        cluster.add_node(name, epc)
    cluster.add_deployment(DEPLOY, MODEL, 32 * MIB, ["node-a", "node-b"])
    server = FakeApiServer(cluster)
    api = client.ApiClient(client.Configuration(host=server.url))
    yield KubernetesBackend(client.CoreV1Api(api), client.AppsV1Api(api), NS), cluster
    server.close()


def test_endpoints_come_from_labelled_pods(kube: tuple[KubernetesBackend, Cluster]) -> None:
    backend, _ = kube
    eps = backend.endpoints()
    assert [(e.model, e.node, e.weight, e.healthy) for e in eps] == [
        (MODEL, "node-a", 1, True),
        (MODEL, "node-b", 1, True),
    ]
    assert eps[0].address == "10.0.0.1:9443"


def test_weight_flips_the_rotation_label_the_service_selects(
    kube: tuple[KubernetesBackend, Cluster],
) -> None:
    backend, cluster = kube
    pod = backend.endpoints()[0].id
    backend.set_weight(pod, 0)
    assert cluster.pods[pod]["metadata"]["labels"]["s3ml.io/in-rotation"] == "false"
    assert backend.endpoints()[0].weight == 0
    backend.set_weight(pod, 1)
    assert cluster.pods[pod]["metadata"]["labels"]["s3ml.io/in-rotation"] == "true"
    with pytest.raises(BackendError, match="404"):
        backend.set_weight("no-such-pod", 0)


def test_free_epc_is_allocatable_minus_requests(kube: tuple[KubernetesBackend, Cluster]) -> None:
    backend, _ = kube
    assert backend.free_epc() == {"node-a": 61 * MIB, "node-b": 61 * MIB, "node-c": 64 * MIB}


def test_scale_out_prefers_the_asked_node_and_falls_back_to_the_freest(
    kube: tuple[KubernetesBackend, Cluster],
) -> None:
    backend, cluster = kube
    assert backend.scale_out(MODEL, "node-a") == f"{DEPLOY}@node-a"
    assert cluster.deployments[DEPLOY]["spec"]["replicas"] == 3
    assert sorted(e.node for e in backend.endpoints()) == ["node-a", "node-a", "node-b"]
    # node-a now has 29 MiB free: too little, so the freest node (node-c) is preferred instead
    assert backend.scale_out(MODEL, "node-a") == f"{DEPLOY}@node-c"
    labels = {
        n: o["metadata"]["labels"].get("s3ml.io/epc-preferred") for n, o in cluster.nodes.items()
    }
    assert labels == {"node-a": None, "node-b": None, "node-c": "true"}
    assert "node-c" in {e.node for e in backend.endpoints()}
    assert backend.scale_out(MODEL, "node-b") == f"{DEPLOY}@node-b"
    assert backend.scale_out(MODEL, "node-b") == f"{DEPLOY}@node-c"  # 32 MiB left on node-c
    with pytest.raises(BackendError, match="no node has"):
        backend.scale_out(MODEL, "node-b")


def test_scale_in_removes_exactly_the_chosen_pod(kube: tuple[KubernetesBackend, Cluster]) -> None:
    backend, cluster = kube
    first, second = (e.id for e in backend.endpoints())
    backend.scale_in(second)
    assert [e.id for e in backend.endpoints()] == [first]
    assert cluster.deployments[DEPLOY]["spec"]["replicas"] == 1
    with pytest.raises(BackendError, match="no model-server pod"):
        backend.scale_in(second)


def test_unreachable_api_server_is_a_backend_error() -> None:
    api = client.ApiClient(client.Configuration(host="http://127.0.0.1:1"))
    api.configuration.retries = 0
    backend = KubernetesBackend(client.CoreV1Api(api), client.AppsV1Api(api), NS)
    with pytest.raises(BackendError, match="unreachable"):
        backend.endpoints()
