"""HAProxy and Prometheus configuration for the local cluster.

HAProxy runs in TCP mode: TLS passes through untouched to the enclave
replicas, so the load balancer never sees plaintext (S3ML's L4 design).
"""

from __future__ import annotations

import json
from pathlib import Path

from deploy.local.cluster import Cluster


def haproxy_preamble(admin_socket: Path) -> list[str]:
    """TCP mode, the admin socket the scaler drives, and redispatch away from dead replicas."""
    return [
        "global",
        f"    stats socket {admin_socket} mode 600 level admin",
        "    maxconn 4096",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    option redispatch",
        "    retries 2",
    ]


def haproxy(cluster: Cluster, state: Path) -> str:
    lines = [
        *haproxy_preamble(state / "haproxy.sock"),
        "frontend metrics",
        "    mode http",
        f"    bind 127.0.0.1:{cluster.haproxy_metrics_port}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    monitor-uri /healthz",
    ]
    for model in cluster.models:
        lines += [
            f"frontend {model}",
            f"    bind 127.0.0.1:{cluster.frontend(model)}",
            f"    default_backend {model}_replicas",
            f"backend {model}_replicas",
            "    balance roundrobin",
        ]
        lines += [
            f"    server {r.name} 127.0.0.1:{r.port} check inter 1s fall 2 rise 1 weight 1"
            for r in cluster.replicas()
            if r.model == model
        ]
    return "\n".join(lines) + "\n"


def endpoints(cluster: Cluster, state: Path) -> str:
    """`endpoints.json`: where everything is, for `s3mlctl status` and operators' tools."""

    def health(port: int) -> str:
        return f"http://127.0.0.1:{port}/readyz"

    replicas = [
        {
            "name": r.name,
            "node": f"node-{r.node}",
            "model": r.model,
            "address": f"127.0.0.1:{r.port}",
            "health_url": health(r.metrics_port),
            "backend": f"{r.model}_replicas",
        }
        for r in cluster.replicas()
    ]
    components = {
        "acs": health(cluster.acs_metrics_port),
        "verifier": health(cluster.verifier_metrics_port),
        "haproxy": f"http://127.0.0.1:{cluster.haproxy_metrics_port}/healthz",
        "prometheus": f"http://127.0.0.1:{cluster.prometheus_port}/-/ready",
        "scaler": health(cluster.scaler_metrics_port),
    }
    for n in range(cluster.nodes):
        components[f"host-agent node-{n}"] = health(cluster.agent_metrics_port(n))
        components[f"epc-exporter node-{n}"] = health(cluster.epc_exporter_port(n))
    document = {
        "platform": "sim",
        "replicas": replicas,
        "components": components,
        "haproxy_socket": str(state / "haproxy.sock"),
        "prometheus_url": f"http://127.0.0.1:{cluster.prometheus_port}",
        "scaler": f"127.0.0.1:{cluster.scaler_port}",
        "slo_ms": cluster.slo_ms,
    }
    return json.dumps(document, indent=2) + "\n"


def prometheus(cluster: Cluster) -> str:
    jobs = {
        "acs": [cluster.acs_metrics_port],
        "model-server": [r.metrics_port for r in cluster.replicas()],
        "verifier": [cluster.verifier_metrics_port],
        "host-agent": [cluster.agent_metrics_port(n) for n in range(cluster.nodes)],
        "haproxy": [cluster.haproxy_metrics_port],
        "epc-exporter": [cluster.epc_exporter_port(n) for n in range(cluster.nodes)],
        "scaler": [cluster.scaler_metrics_port],
    }
    lines = ["global:", "  scrape_interval: 5s", "scrape_configs:"]
    for job, ports in jobs.items():
        targets = [f"127.0.0.1:{port}" for port in ports]
        lines += [f"  - job_name: {job}", "    static_configs:", f"      - targets: {targets}"]
    return "\n".join(lines) + "\n"
