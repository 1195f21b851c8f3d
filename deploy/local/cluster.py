"""The local cluster's configuration (deploy/local/cluster.yaml), parsed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

KNOWN_MODELS = (
    "mobilenet_v1_f32",
    "mobilenet_v1_int8",
    "efficientnet_lite0_f32",
    "efficientnet_lite0_int8",
)


class ClusterConfigError(Exception):
    """cluster.yaml is malformed; the message names the field."""


@dataclass(frozen=True)
class Replica:
    node: int
    model: str
    port: int
    metrics_port: int

    @property
    def name(self) -> str:
        return f"node-{self.node}-{self.model}"


@dataclass(frozen=True)
class Cluster:
    nodes: int
    models: tuple[str, ...]
    acs_port: int
    frontend_port: int
    replica_port: int
    metrics_port: int
    prometheus_port: int
    verifier_port: int
    agent_port: int
    pool: int
    threads: int
    slo_ms: dict[str, float] = field(default_factory=dict)
    otlp_endpoint: str = ""

    @property
    def acs_admin_port(self) -> int:
        return self.acs_port + 1

    @property
    def acs_metrics_port(self) -> int:
        return self.metrics_port - 1

    @property
    def verifier_metrics_port(self) -> int:
        return self.metrics_port - 2

    @property
    def haproxy_metrics_port(self) -> int:
        return self.metrics_port - 3

    def agent_metrics_port(self, node: int) -> int:
        return self.metrics_port - 10 - node

    @property
    def scaler_port(self) -> int:
        return self.metrics_port - 5

    @property
    def scaler_metrics_port(self) -> int:
        return self.metrics_port - 4

    def epc_exporter_port(self, node: int) -> int:
        return self.metrics_port - 20 - node

    def ports(self) -> dict[str, int]:
        """Every port the cluster listens on, by what listens there."""
        named = {
            "ACS": self.acs_port, "ACS admin": self.acs_admin_port, "ACS metrics": self.acs_metrics_port,
            "verifier": self.verifier_port, "verifier metrics": self.verifier_metrics_port,
            "HAProxy metrics": self.haproxy_metrics_port, "Prometheus": self.prometheus_port,
            "scaler": self.scaler_port, "scaler metrics": self.scaler_metrics_port,
        }  # fmt: skip
        for node in range(self.nodes):
            named[f"host agent node-{node}"] = self.agent_port + node
            named[f"host agent node-{node} metrics"] = self.agent_metrics_port(node)
            named[f"EPC exporter node-{node}"] = self.epc_exporter_port(node)
        for model in self.models:
            named[f"HAProxy frontend {model}"] = self.frontend(model)
        for r in self.replicas():
            named[f"replica {r.name}"] = r.port
            named[f"replica {r.name} metrics"] = r.metrics_port
        return named

    def trace_flags(self, state: Path, component: str) -> list[str]:
        """OTLP when configured, else a JSON-lines file per component under traces/."""
        if self.otlp_endpoint:
            return ["--otlp-endpoint", self.otlp_endpoint]
        return ["--trace-file", str(state / "traces" / f"{component}.jsonl")]

    def frontend(self, model: str) -> int:
        return self.frontend_port + self.models.index(model)

    def replicas(self) -> list[Replica]:
        return [
            Replica(n, m, self.replica_port + 10 * n + i, self.metrics_port + 10 * n + i)
            for n in range(self.nodes)
            for i, m in enumerate(self.models)
        ]


def service_name(model: str) -> str:
    return model.replace("_", "-")


def load(path: Path) -> Cluster:
    try:
        raw = yaml.safe_load(path.read_text())
        ports, replica = raw["ports"], raw.get("replica", {})
        cluster = Cluster(
            nodes=int(raw["nodes"]),
            models=tuple(str(m) for m in raw["models"]),
            acs_port=int(ports["acs"]),
            frontend_port=int(ports["frontend"]),
            replica_port=int(ports["replica"]),
            metrics_port=int(ports["metrics"]),
            prometheus_port=int(ports["prometheus"]),
            verifier_port=int(ports.get("verifier", 7500)),
            agent_port=int(ports.get("agent", 7600)),
            pool=int(replica.get("pool", 1)),
            threads=int(replica.get("threads", 1)),
            otlp_endpoint=str((raw.get("telemetry") or {}).get("otlp_endpoint", "")),
            slo_ms={str(k): float(v) for k, v in (raw.get("slo_ms") or {}).items()},
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as err:
        raise ClusterConfigError(f"{path}: {' '.join(str(err).split())}") from err
    unknown = [m for m in cluster.models if m not in KNOWN_MODELS]
    if unknown:
        raise ClusterConfigError(
            f"{path}: unknown model {unknown[0]!r}; known: {', '.join(KNOWN_MODELS)}"
        )
    if not 1 <= cluster.nodes <= 9:
        raise ClusterConfigError(f"{path}: nodes must be 1..9")
    seen: dict[int, str] = {}
    for name, port in cluster.ports().items():
        if port in seen:
            raise ClusterConfigError(
                f"{path}: {seen[port]} and {name} would both listen on port {port}; "
                "move one of the `ports` bases"
            )
        seen[port] = name
    return cluster
