"""`scaler`: the EPC-aware load-balancing and scaling controller (S3ML Algorithm 1).

Picks the backend (HAProxy runtime API on the local cluster, or the Kubernetes
API), reads paging from Prometheus every interval, and serves s3ml.scaler.v1
for `s3mlctl status`. The local cluster wires a ReplicaLauncher in-process
(deploy/local); started alone with --backend local it balances but does not
start or stop replicas.
"""

from __future__ import annotations

import argparse
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

from s3ml.scaler.v1 import scaler_pb2_grpc
from services.rpc.status import ErrorMappingInterceptor
from services.scaler.api.servicer import CODES, ScalerServicer
from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller import profiles
from services.scaler.controller.balancing import Hysteresis
from services.scaler.controller.controller import Controller, ControllerConfig
from services.scaler.controller.ports import Backend
from services.scaler.controller.prometheus import PrometheusSource
from services.scaler.controller.scaling import ScalingPolicy
from services.scaler.controller.state import ModelSlo
from services.telemetry import health, lifecycle, logs


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scaler")
    p.add_argument("--prometheus-url", default="http://127.0.0.1:9090")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between decisions")
    p.add_argument("--window", default="30s", help="PromQL rate() window")
    p.add_argument("--stale-after", type=float, default=60.0, help="seconds; older = blind")
    p.add_argument("--backend", choices=("local", "kubernetes"), default="local")
    p.add_argument("--haproxy-socket", type=Path, default=Path("state/haproxy.sock"))
    p.add_argument("--namespace", default="s3ml", help="Kubernetes namespace of the models")
    p.add_argument("--profiles-dir", type=Path, help="profiler JSON files (TH per model)")
    p.add_argument("--model", action="append", default=[], help="model to control, repeatable")
    p.add_argument("--intervals-over-threshold", type=int, default=3, help="N of Algorithm 1")
    p.add_argument("--recover-intervals", type=int, default=3, help="M: calm intervals to return")
    p.add_argument("--recover-fraction", type=float, default=0.5, help="h: calm = paging < h*TH")
    p.add_argument(
        "--foreign-patience",
        type=int,
        default=10,
        help="while a foreign enclave still runs, return only after M x this calm intervals",
    )
    p.add_argument("--min-replicas", type=int, default=1)
    p.add_argument("--max-replicas", type=int, default=4)
    p.add_argument("--cooldown", type=float, default=30.0, help="seconds between scalings")
    p.add_argument("--replica-epc-mib", type=int, default=32, help="EPC a new replica needs")
    p.add_argument("--replica-capacity-rps", type=float, default=0.0, help="0: no load scaling")
    p.add_argument("--no-autoscale", action="store_true")
    p.add_argument("--listen", default="127.0.0.1:7700", help="gRPC s3ml.scaler.v1")
    p.add_argument("--metrics-listen", default="127.0.0.1:7701", help="HOST:PORT; '' disables")
    p.add_argument("--platform", choices=("sim", "sgx"), default="sim")
    return p


def backend_for(args: argparse.Namespace) -> Backend:
    if args.backend == "local":
        return HaproxyBackend(RuntimeApi(args.haproxy_socket))
    from kubernetes import client, config  # noqa: PLC0415 - only the k8s backend needs it

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    from services.scaler.backends.kubernetes import KubernetesBackend  # noqa: PLC0415

    return KubernetesBackend(client.CoreV1Api(), client.AppsV1Api(), args.namespace)


def controller_for(args: argparse.Namespace, backend: Backend) -> Controller:
    template = ModelSlo(
        "template",
        100.0,
        profiles.DEFAULT_THRESHOLD_MB_PER_S,
        args.intervals_over_threshold,
        args.min_replicas,
        args.max_replicas,
    )
    slos = profiles.load_slos(
        args.profiles_dir, args.model or list(profiles.PAPER_SLO_MS), template
    )
    config = ControllerConfig(
        hysteresis=Hysteresis(args.recover_intervals, args.recover_fraction, args.foreign_patience),
        scaling=ScalingPolicy(
            cooldown_s=args.cooldown,
            replica_epc_bytes=args.replica_epc_mib << 20,
            replica_capacity_rps=args.replica_capacity_rps,
            recover_fraction=args.recover_fraction,
        ),
        interval_s=args.interval,
        autoscale=not args.no_autoscale,
    )
    source = PrometheusSource(args.prometheus_url, args.window, args.stale_after)
    return Controller(backend, source, slos, config)


def serve(controller: Controller, args: argparse.Namespace) -> tuple[grpc.Server, int]:
    """Starts the status API and the control loop; also used in-process by `make up`."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[ErrorMappingInterceptor(CODES)]
    )
    servicer = ScalerServicer(controller, simulated=args.platform == "sim")
    scaler_pb2_grpc.add_ScalerServicer_to_server(servicer, server)
    port = server.add_insecure_port(args.listen)
    server.start()
    loop = threading.Thread(target=controller.run, name="control-loop", daemon=True)
    loop.start()
    return server, port


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    log = logs.configure("scaler", simulated=args.platform == "sim")
    try:
        controller = controller_for(args, backend_for(args))
    except (ValueError, OSError) as err:
        raise SystemExit(f"scaler: {err}") from err
    probes = health.Health("scaler", simulated=args.platform == "sim")
    if args.metrics_listen:
        health.serve(args.metrics_listen, probes)
    server, port = serve(controller, args)
    probes.ready()
    log.info(
        "scaler on %s, backend %s, Prometheus %s every %.1fs over %s",
        args.listen, args.backend, args.prometheus_url, args.interval, args.window,
    )  # fmt: skip
    print(f"READY port={port}", flush=True)
    stop = lifecycle.stop_requested()
    stop.wait()
    controller.stop()
    server.stop(2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
