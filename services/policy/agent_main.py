"""`host-agent`: serves this host's TPM evidence (the paper's trusted boot service)."""

from __future__ import annotations

import argparse
import sys
from concurrent import futures
from pathlib import Path

import grpc
from tpm2_pytss import TSS2_Exception

from s3ml.policy.v1 import agent_pb2_grpc
from services.policy.api.servicers import CODES, HostAgentServicer
from services.policy.tpm.agent import TpmAgent
from services.rpc.status import ErrorMappingInterceptor
from services.telemetry import health, lifecycle, logs, tracing
from services.telemetry.propagation import ServerTracing


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="host-agent")
    p.add_argument("--host", required=True, help="this host's name in verdicts")
    p.add_argument(
        "--tcti", default="device:/dev/tpmrm0", help="e.g. swtpm:host=127.0.0.1,port=2321"
    )
    p.add_argument(
        "--ima-log", type=Path, default=Path("/sys/kernel/security/ima/binary_runtime_measurements")
    )
    p.add_argument(
        "--boot-log", type=Path, default=Path("/sys/kernel/security/tpm0/binary_bios_measurements")
    )
    p.add_argument("--listen", default="127.0.0.1:7600")
    p.add_argument("--metrics-listen", default="", help="host:port for /metrics, /healthz, /readyz")
    p.add_argument("--otlp-endpoint", default="", help="OTLP/gRPC trace collector")
    p.add_argument("--trace-file", type=Path, help="JSON-lines spans when no OTLP endpoint")
    args = p.parse_args(argv)
    log = logs.configure("host-agent", simulated=args.tcti.startswith("swtpm"), hardware="tpm")
    tracing.configure("host-agent", "tpm", args.otlp_endpoint, args.trace_file)
    probes = health.Health("host-agent", args.tcti.startswith("swtpm"))
    if args.metrics_listen:
        health.serve(args.metrics_listen, probes)
    agent = TpmAgent(args.tcti)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[ServerTracing(), ErrorMappingInterceptor(CODES)],
    )
    agent_pb2_grpc.add_HostAgentServicer_to_server(
        HostAgentServicer(args.host, agent, args.ima_log, args.boot_log), server
    )
    port = server.add_insecure_port(args.listen)
    server.start()
    log.info("host agent for %s on %s (TPM %s)", args.host, args.listen, args.tcti)
    probes.ready()
    print(f"READY port={port}", flush=True)
    stop = lifecycle.stop_requested()
    stop.wait()
    server.stop(2).wait()
    try:
        agent.close()
    except TSS2_Exception as err:  # the TPM went first (a node's swtpm stops with it)
        log.info("TPM already gone at shutdown (%s); its transient objects went with it", err)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
