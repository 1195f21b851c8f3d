"""The EPC-aware controller inside `make up` (S3ML Algorithm 1 and scaling).

It runs in the `up` process because its replica launcher is the cluster's
supervisor: Algorithm 1 sets HAProxy weights through the runtime API, and a
scale-out starts a replica on the emulated node with the most free EPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import grpc

from deploy.local.cluster import Cluster
from deploy.local.replicas import LocalLauncher
from services.scaler import main as scaler_main
from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller.controller import Controller
from services.telemetry import health

INTERVAL_S = 5.0
WINDOW = "30s"  # Prometheus scrapes every 5 s: six samples per rate()


@dataclass
class RunningScaler:
    controller: Controller
    server: grpc.Server
    probes: ThreadingHTTPServer

    def stop(self) -> None:
        self.controller.stop()
        self.server.stop(2).wait()
        self.probes.shutdown()


def start(cluster: Cluster, launcher: LocalLauncher, haproxy_socket: str) -> RunningScaler:
    args = scaler_main.parser().parse_args([
        "--prometheus-url", f"http://127.0.0.1:{cluster.prometheus_port}",
        "--interval", str(INTERVAL_S), "--window", WINDOW,
        "--listen", f"127.0.0.1:{cluster.scaler_port}",
        "--max-replicas", str(cluster.nodes + 1),
        *[flag for model in cluster.models for flag in ("--model", model)],
    ])  # fmt: skip
    controller = scaler_main.controller_for(
        args,
        HaproxyBackend(RuntimeApi(Path(haproxy_socket)), launcher),
    )
    server, _ = scaler_main.serve(controller, args)
    probes = health.Health("scaler", simulated=True)
    http = health.serve(f"127.0.0.1:{cluster.scaler_metrics_port}", probes)
    probes.ready()
    return RunningScaler(controller, server, http)
