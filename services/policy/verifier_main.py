"""`verifier`: appraises host evidence and signs verdicts."""

from __future__ import annotations

import argparse
import sys
from concurrent import futures
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.policy.v1 import verifier_pb2_grpc
from services.attest.ca import key_pem
from services.attest.sim.pki import write_private
from services.policy import runtime_policy
from services.policy.api.servicers import CODES, VerifierServicer
from services.policy.verifier import Verifier
from services.rpc.status import ErrorMappingInterceptor
from services.telemetry import health, lifecycle, logs, tracing
from services.telemetry.propagation import ServerTracing


def signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The verdict-signing key, created 0600 on first start."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, key_pem(ec.generate_private_key(ec.SECP256R1())))
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit(f"verifier: {path} is not an EC private key")
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.with_suffix(".pub.pem").write_bytes(public)  # for relying parties: the ACS's --verdict-key
    return key


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="verifier")
    p.add_argument(
        "--manufacturer-ca", type=Path, action="append", required=True, help="PEM, repeatable"
    )
    p.add_argument(
        "--policy", action="append", default=[], help="NAME=runtime-policy.json, repeatable"
    )
    p.add_argument("--state-dir", type=Path, required=True)
    p.add_argument("--listen", default="127.0.0.1:7500")
    p.add_argument("--metrics-listen", default="", help="host:port for /metrics, /healthz, /readyz")
    p.add_argument("--otlp-endpoint", default="", help="OTLP/gRPC trace collector")
    p.add_argument("--trace-file", type=Path, help="JSON-lines spans when no OTLP endpoint")
    args = p.parse_args(argv)
    log = logs.configure("verifier", simulated=False, hardware="tpm")
    tracing.configure("verifier", "tpm", args.otlp_endpoint, args.trace_file)
    probes = health.Health("verifier", False)
    if args.metrics_listen:
        health.serve(args.metrics_listen, probes)
    policies = {}
    for spec in args.policy:
        name, _, path = spec.partition("=")
        try:
            policies[name] = runtime_policy.load(name, Path(path).read_bytes())
        except (OSError, runtime_policy.PolicyError) as err:
            raise SystemExit(f"verifier: policy {name!r}: {err}") from err
    key = signing_key(args.state_dir / "verdict-signing.key")
    verifier = Verifier([c.read_bytes() for c in args.manufacturer_ca], policies, key)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        interceptors=[ServerTracing(), ErrorMappingInterceptor(CODES)],
        options=[("grpc.max_receive_message_length", 80 << 20)],
    )
    verifier_pb2_grpc.add_VerifierServicer_to_server(VerifierServicer(verifier), server)
    port = server.add_insecure_port(args.listen)
    server.start()
    log.info("verifier on %s with policies %s", args.listen, ", ".join(policies) or "(none)")
    probes.ready()
    print(f"READY port={port}", flush=True)
    stop = lifecycle.stop_requested()
    stop.wait()
    server.stop(2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
