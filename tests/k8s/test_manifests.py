"""deploy/k8s: every manifest is valid against the Kubernetes OpenAPI schema
(kubernetes-validate, offline), the model servers are wired for Algorithm 1,
and the scaler's RBAC grants exactly what its backend calls (driven against the
FAKE API server of tests/scaler/backends, as no real one can run here)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes import client

from services.scaler.backends.kubernetes import (
    EPC,
    MODEL_LABEL,
    ROTATION,
    KubernetesBackend,
    deployment_for,
)
from services.scaler.controller.profiles import PAPER_SLO_MS
from tests.scaler.backends.fake_kube import Cluster, FakeApiServer

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
Doc = dict[str, Any]


def docs() -> list[tuple[str, Doc]]:
    out = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def of_kind(kind: str) -> list[Doc]:
    return [d for _, d in docs() if d["kind"] == kind]


def test_manifests_exist() -> None:
    kinds = {d["kind"] for _, d in docs()}
    assert {"Deployment", "DaemonSet", "Service", "ServiceAccount", "Role", "ClusterRole"} <= kinds


@pytest.mark.parametrize(("name", "doc"), docs(), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_against_the_openapi_schema(name: str, doc: Doc) -> None:
    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_a_broken_manifest() -> None:
    bad = of_kind("Deployment")[0]
    bad["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_one_model_server_per_model_wired_for_rotation() -> None:
    deployments = {
        d["metadata"]["labels"][MODEL_LABEL]: d
        for d in of_kind("Deployment")
        if MODEL_LABEL in d["metadata"].get("labels", {})
    }
    services = {
        d["metadata"]["labels"][MODEL_LABEL]: d
        for d in of_kind("Service")
        if MODEL_LABEL in d["metadata"].get("labels", {})
    }
    assert set(deployments) == set(PAPER_SLO_MS) == set(services)
    for model, dep in deployments.items():
        assert dep["metadata"]["name"] == deployment_for(model)
        template = dep["spec"]["template"]
        selector = services[model]["spec"]["selector"]
        assert selector[ROTATION] == "true", "the Service must select on the rotation label"
        assert ROTATION not in dep["spec"]["selector"]["matchLabels"], "flipping must not orphan"
        assert selector.items() <= template["metadata"]["labels"].items()
        container = template["spec"]["containers"][0]
        assert EPC in container["resources"]["requests"]
        assert {p["name"] for p in container["ports"]} >= {"grpc"}
        assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_scraped_components_carry_prometheus_annotations() -> None:
    scraped = {
        d["metadata"]["name"]
        for d in of_kind("Deployment") + of_kind("DaemonSet")
        if d["spec"]["template"]["metadata"].get("annotations", {}).get("prometheus.io/scrape")
    }
    assert {"acs", "scaler", "epc-exporter"} <= scraped


def rbac_rules() -> set[tuple[str, str, str]]:
    granted = set()
    for role in of_kind("Role") + of_kind("ClusterRole"):
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    granted |= {(group, resource, verb) for verb in rule["verbs"]}
    return granted


@pytest.fixture
def fake() -> Iterator[tuple[KubernetesBackend, Cluster]]:
    cluster = Cluster("s3ml")
    for node in ("node-a", "node-b", "node-c"):
        cluster.add_node(node, 93 << 20)
    model = "mobilenet_v1_int8"
    cluster.add_deployment(deployment_for(model), model, 24 << 20, ["node-a", "node-b"])
    server = FakeApiServer(cluster)
    api = client.ApiClient(client.Configuration(host=server.url))
    yield KubernetesBackend(client.CoreV1Api(api), client.AppsV1Api(api), "s3ml"), cluster
    server.close()


def test_rbac_covers_exactly_the_verbs_the_backend_uses(
    fake: tuple[KubernetesBackend, Cluster],
) -> None:
    backend, cluster = fake
    first = backend.endpoints()[0]
    backend.set_weight(first.id, 0)
    backend.set_weight(first.id, 1)
    backend.scale_out(first.model, "node-c")
    backend.scale_out(first.model, "node-a")
    backend.scale_in(first.id)
    assert cluster.calls == rbac_rules()


def test_scaler_runs_under_its_service_account() -> None:
    scaler = next(d for d in of_kind("Deployment") if d["metadata"]["name"] == "scaler")
    assert scaler["spec"]["template"]["spec"]["serviceAccountName"] == "scaler"
    bindings = of_kind("RoleBinding") + of_kind("ClusterRoleBinding")
    assert len(bindings) == 2
    for b in bindings:
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": "scaler", "namespace": "s3ml"}]
