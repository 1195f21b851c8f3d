"""HAProxy and Prometheus configuration for the local cluster.

HAProxy runs in TCP mode: TLS passes through untouched to the enclave
replicas, so the load balancer never sees plaintext (S3ML's L4 design).
"""

from __future__ import annotations

from pathlib import Path

from deploy.local.cluster import Cluster


def haproxy(cluster: Cluster, state: Path) -> str:
    lines = [
        "global",
        f"    stats socket {state / 'haproxy.sock'} mode 600 level admin",
        "    maxconn 4096",
        "defaults",
        "    mode tcp",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    option redispatch",
        "    retries 2",
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


def prometheus(cluster: Cluster) -> str:
    targets = [f"127.0.0.1:{cluster.acs_metrics_port}"]
    replicas = [f"127.0.0.1:{r.metrics_port}" for r in cluster.replicas()]
    return (
        "global:\n  scrape_interval: 5s\n"
        "scrape_configs:\n"
        f"  - job_name: acs\n    static_configs:\n      - targets: {targets}\n"
        f"  - job_name: model-server\n    static_configs:\n      - targets: {replicas}\n"
    )
