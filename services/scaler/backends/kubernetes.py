"""Kubernetes backend, on the official client.

Out of rotation = the pod's `s3ml.io/in-rotation` label flipped to "false":
the model's Service selects on "true", so kube-proxy stops sending it new
connections while the pod keeps running (and comes back by flipping the
label). Scaling changes the Deployment's scale subresource; the node with the
most free `sgx.intel.com/epc` (allocatable minus pod requests) is labelled
`s3ml.io/epc-preferred=true`, which the Deployments prefer through node
affinity, and a pod to remove gets the lowest pod-deletion-cost first.
Kubernetes weights are binary: any weight > 0 is "in rotation".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import urllib3
from kubernetes.client import AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from services.scaler.controller.ports import BackendError
from services.scaler.controller.state import Endpoint

COMPONENT = "app.kubernetes.io/component"
MODEL_LABEL = "s3ml.io/model"
ROTATION = "s3ml.io/in-rotation"
PREFERRED = "s3ml.io/epc-preferred"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
EPC = "sgx.intel.com/epc"
SERVING_PORT = 8443  # model-server default; a container port named "grpc" wins
SELECTOR = f"{COMPONENT}=model-server"


def deployment_for(model: str) -> str:
    """Deployment name of a model, as deploy/k8s names it (DNS-1123)."""
    return "model-" + model.replace("_", "-")


class KubernetesBackend:
    def __init__(
        self,
        core: CoreV1Api,
        apps: AppsV1Api,
        namespace: str = "s3ml",
        deployment: Callable[[str], str] = deployment_for,
    ) -> None:
        self._core, self._apps, self._ns, self._deployment = core, apps, namespace, deployment

    @property
    def name(self) -> str:
        return "kubernetes"

    def endpoints(self) -> Sequence[Endpoint]:
        pods = _call(lambda: self._core.list_namespaced_pod(self._ns, label_selector=SELECTOR))
        eps = []
        for pod in pods.items:
            meta, labels = pod.metadata, pod.metadata.labels or {}
            if meta.deletion_timestamp is not None or not pod.spec.node_name:
                continue
            ready = any(
                c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or [])
            )
            eps.append(
                Endpoint(
                    id=meta.name,
                    model=labels.get(MODEL_LABEL, ""),
                    node=pod.spec.node_name,
                    address=f"{pod.status.pod_ip or ''}:{_grpc_port(pod)}",
                    weight=1 if labels.get(ROTATION) == "true" else 0,
                    healthy=ready,
                )
            )
        return eps

    def set_weight(self, endpoint_id: str, weight: int) -> None:
        value = "true" if weight > 0 else "false"
        body = {"metadata": {"labels": {ROTATION: value}}}
        _call(lambda: self._core.patch_namespaced_pod(endpoint_id, self._ns, body))

    def free_epc(self) -> dict[str, int]:
        """Per node: allocatable sgx.intel.com/epc minus what its pods request."""
        live = "status.phase!=Succeeded,status.phase!=Failed"
        pods = _call(partial(self._core.list_pod_for_all_namespaces, field_selector=live))
        requested: dict[str, int] = {}
        for pod in pods.items:
            node = pod.spec.node_name or ""
            requested[node] = requested.get(node, 0) + _epc_requests(pod)
        free = {}
        for node in _call(self._core.list_node).items:
            alloc = (node.status.allocatable or {}).get(EPC)
            if alloc is not None:
                name = node.metadata.name
                free[name] = _quantity(alloc) - requested.get(name, 0)
        return free

    def scale_out(self, model: str, node: str) -> str:
        """Prefers `node` if Kubernetes also sees free EPC there, else the freest node.

        Returns the Deployment and node: the pod name exists only once the
        ReplicaSet creates it; the next interval's endpoints() lists it.
        """
        name = self._deployment(model)
        need = _epc_requests_template(
            _call(lambda: self._apps.read_namespaced_deployment(name, self._ns))
        )
        free = self.free_epc()
        fits = {n: f for n, f in free.items() if f >= need}
        if not fits:
            raise BackendError(f"{model}: no node has {need} bytes of free {EPC}")
        chosen = node if node in fits else max(fits, key=lambda n: (fits[n], n))
        for n in {chosen} | self._preferred():
            label = {"metadata": {"labels": {PREFERRED: "true" if n == chosen else None}}}
            _call(partial(self._core.patch_node, n, label))
        replicas = self._replicas(name) + 1
        self._set_replicas(name, replicas)
        return f"{name}@{chosen}"

    def scale_in(self, endpoint_id: str) -> None:
        pod = _call(
            lambda: self._core.list_namespaced_pod(
                self._ns, label_selector=SELECTOR, field_selector=f"metadata.name={endpoint_id}"
            )
        )
        if not pod.items:
            raise BackendError(f"no model-server pod {endpoint_id!r} in {self._ns}")
        model = (pod.items[0].metadata.labels or {}).get(MODEL_LABEL, "")
        body = {
            "metadata": {"labels": {ROTATION: "false"}, "annotations": {DELETION_COST: "-1000"}}
        }
        _call(lambda: self._core.patch_namespaced_pod(endpoint_id, self._ns, body))
        name = self._deployment(model)
        self._set_replicas(name, max(0, self._replicas(name) - 1))

    def _preferred(self) -> set[str]:
        nodes = _call(lambda: self._core.list_node(label_selector=f"{PREFERRED}=true"))
        return {n.metadata.name for n in nodes.items}

    def _replicas(self, deployment: str) -> int:
        scale = _call(lambda: self._apps.read_namespaced_deployment_scale(deployment, self._ns))
        return int(scale.spec.replicas or 0)

    def _set_replicas(self, deployment: str, replicas: int) -> None:
        body = {"spec": {"replicas": replicas}}
        _call(lambda: self._apps.patch_namespaced_deployment_scale(deployment, self._ns, body))


def _grpc_port(pod: Any) -> int:
    named = [p for c in pod.spec.containers for p in (c.ports or []) if p.name == "grpc"]
    return int(named[0].container_port) if named else SERVING_PORT


def _quantity(value: str) -> int:
    return int(cast(Callable[[str], Any], parse_quantity)(value))


def _call(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except ApiException as err:
        raise BackendError(f"Kubernetes API: {err.status} {err.reason}") from err
    except (OSError, urllib3.exceptions.HTTPError) as err:
        raise BackendError(f"Kubernetes API unreachable: {err}") from err


def _container_epc(containers: Any) -> int:
    total = 0
    for c in containers or []:
        req = (c.resources.requests if c.resources else None) or {}
        if EPC in req:
            total += _quantity(req[EPC])
    return total


def _epc_requests(pod: Any) -> int:
    return _container_epc(pod.spec.containers)


def _epc_requests_template(deployment: Any) -> int:
    return _container_epc(deployment.spec.template.spec.containers)
