"""A FAKE Kubernetes API server: just the endpoints the scaler's backend uses.

No real API server (nor etcd, nor a scheduler) can run on this machine, so the
Kubernetes backend is tested with the real `kubernetes` client against this
small HTTP server. It keeps pods, nodes and Deployments in memory, applies
merge patches (null deletes a key), schedules a new pod onto the
`s3ml.io/epc-preferred` node when it fits (else the freest node), removes the
pod with the lowest pod-deletion-cost on scale-down, and records every
(API group, resource, verb) it served so the RBAC test can compare.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

EPC = "sgx.intel.com/epc"
Obj = dict[str, Any]


def merge(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = value


def matches(obj: Obj, label_selector: str, field_selector: str) -> bool:
    labels = obj["metadata"].get("labels", {})
    for term in filter(None, label_selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    fields = {
        "metadata.name": obj["metadata"]["name"],
        "spec.nodeName": obj.get("spec", {}).get("nodeName", ""),
        "status.phase": obj.get("status", {}).get("phase", ""),
    }
    for term in filter(None, field_selector.split(",")):
        negate = "!=" in term
        key, value = term.split("!=" if negate else "=", 1)
        if (fields.get(key) == value) == negate:
            return False
    return True


@dataclass
class Cluster:
    namespace: str
    nodes: dict[str, Obj] = field(default_factory=dict)
    pods: dict[str, Obj] = field(default_factory=dict)
    deployments: dict[str, Obj] = field(default_factory=dict)
    calls: set[tuple[str, str, str]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _serial: int = 0

    def add_node(self, name: str, epc_bytes: int) -> None:
        self.nodes[name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {}},
            "status": {"allocatable": {EPC: str(epc_bytes), "cpu": "8"}},
        }

    def add_deployment(self, name: str, model: str, epc_request: int, nodes: list[str]) -> None:
        labels = {
            "app.kubernetes.io/component": "model-server",
            "s3ml.io/model": model,
            "s3ml.io/in-rotation": "true",
        }
        container = {
            "name": "server",
            "ports": [{"name": "grpc", "containerPort": 9443}],
            "resources": {"requests": {EPC: str(epc_request)}},
        }
        self.deployments[name] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"s3ml.io/model": model}},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            },
        }
        for node in nodes:
            self.spawn(name, node)

    def free(self, node: str) -> int:
        used = sum(
            int(c["resources"]["requests"].get(EPC, 0))
            for p in self.pods.values()
            if p["spec"].get("nodeName") == node
            for c in p["spec"]["containers"]
        )
        return int(self.nodes[node]["status"]["allocatable"][EPC]) - used

    def spawn(self, deployment: str, node: str | None = None) -> Obj:
        dep = self.deployments[deployment]
        template = json.loads(json.dumps(dep["spec"]["template"]))
        need = sum(int(c["resources"]["requests"][EPC]) for c in template["spec"]["containers"])
        if node is None:
            fits = [n for n in self.nodes if self.free(n) >= need]
            preferred = [
                n
                for n in fits
                if self.nodes[n]["metadata"]["labels"].get("s3ml.io/epc-preferred") == "true"
            ]
            node = (preferred or sorted(fits, key=lambda n: -self.free(n)) or [""])[0]
        self._serial += 1
        name = f"{deployment}-{self._serial}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, **template["metadata"]},
            "spec": {**template["spec"], "nodeName": node},
            "status": {
                "phase": "Running" if node else "Pending",
                "podIP": f"10.0.0.{self._serial}",
                "conditions": [{"type": "Ready", "status": "True" if node else "False"}],
            },
        }
        self.pods[name] = pod
        dep["spec"]["replicas"] += 1
        return pod

    def _of(self, deployment: str) -> list[Obj]:
        return [p for p in self.pods.values() if p["metadata"]["name"].startswith(deployment + "-")]

    def rescale(self, deployment: str, replicas: int) -> None:
        dep = self.deployments[deployment]
        while len(self._of(deployment)) < replicas:
            self.spawn(deployment)
        while len(self._of(deployment)) > replicas:
            victim = min(self._of(deployment), key=_deletion_order)
            del self.pods[victim["metadata"]["name"]]
        dep["spec"]["replicas"] = replicas


def _deletion_order(pod: Obj) -> tuple[int, int]:
    """Lowest pod-deletion-cost first, then the newest (as the ReplicaSet controller)."""
    annotations = pod["metadata"].get("annotations", {})
    cost = int(annotations.get("controller.kubernetes.io/pod-deletion-cost", "0"))
    return cost, -int(pod["metadata"]["name"].rsplit("-", 1)[1])


ROUTES = [
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$"), "", "pods"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$"), "", "pods"),
    (re.compile(r"^/api/v1/pods$"), "", "pods"),
    (re.compile(r"^/api/v1/nodes/(?P<name>[^/]+)$"), "", "nodes"),
    (re.compile(r"^/api/v1/nodes$"), "", "nodes"),
    (
        re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)/scale$"),
        "apps",
        "deployments/scale",
    ),
    (
        re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments/(?P<name>[^/]+)$"),
        "apps",
        "deployments",
    ),
]


def handler(cluster: Cluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

        def _serve(self, method: str) -> None:
            url = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            for pattern, group, resource in ROUTES:
                m = pattern.match(url.path)
                if m is None:
                    continue
                name = m.groupdict().get("name")
                verb = {"GET": "get" if name else "list", "PATCH": "patch"}[method]
                body = json.loads(
                    self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null"
                )
                with cluster.lock:
                    cluster.calls.add((group, resource, verb))
                    status, doc = self._do(resource, verb, name, query, body)
                self._reply(status, doc)
                return
            self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})

        def _do(
            self, resource: str, verb: str, name: str | None, q: dict[str, str], body: Any
        ) -> tuple[int, Obj]:
            c = cluster
            store = {
                "pods": c.pods,
                "nodes": c.nodes,
                "deployments": c.deployments,
                "deployments/scale": c.deployments,
            }[resource]
            if verb == "list":
                items = [
                    o
                    for o in store.values()
                    if matches(o, q.get("labelSelector", ""), q.get("fieldSelector", ""))
                ]
                kind = {"pods": "PodList", "nodes": "NodeList"}[resource]
                return 200, {"apiVersion": "v1", "kind": kind, "metadata": {}, "items": items}
            if name not in store:
                return 404, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "code": 404,
                    "reason": "NotFound",
                }
            if resource == "deployments/scale":
                if verb == "patch":
                    c.rescale(name, int(body["spec"]["replicas"]))
                replicas = store[name]["spec"]["replicas"]
                return 200, {
                    "apiVersion": "autoscaling/v1",
                    "kind": "Scale",
                    "metadata": {"name": name, "namespace": c.namespace},
                    "spec": {"replicas": replicas},
                    "status": {"replicas": replicas},
                }
            if verb == "patch":
                merge(store[name], body)
            return 200, store[name]

        def _reply(self, status: int, doc: Obj) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


class FakeApiServer:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler(cluster))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
