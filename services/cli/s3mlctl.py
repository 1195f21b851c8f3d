"""s3mlctl: the s3ml command line.

Every command exits non-zero with a one-line reason on failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.attest.v1 import audit_pb2, audit_pb2_grpc, registry_pb2, registry_pb2_grpc, types_pb2
from services.attest import client
from services.attest.ca import key_pem, utcnow
from services.attest.platform.base import SIM_WARNING
from services.attest.quote.roots import intel_root_pem
from services.attest.server import sim_signer
from services.attest.sim.pki import SimPki, write_private
from services.cli import cluster_status, policy_cmd, volume_cmd
from services.cli.profile import Profile, home
from services.client.inference import AttestedModel, InferenceClientError

Command = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """A failure to report in one line, with what to do about it."""


def cmd_sim_init(args: argparse.Namespace) -> int:
    directory: Path = args.dir
    try:
        pki = SimPki.create(directory)
    except FileExistsError:
        pki = SimPki.load(directory)
        print(f"{directory} already holds a simulated SGX PKI; keeping it")
    signer = sim_signer(directory)
    fingerprint = pki.certs["root"].fingerprint(hashes.SHA256()).hex()
    print(f"WARNING: {SIM_WARNING}")
    print(f"simulated root CA  {fingerprint}  ({directory / 'root.pem'})")
    print(f"enclave MRSIGNER   {signer.hex()}")
    return 0


def _mrenclave(args: argparse.Namespace) -> str:
    if args.mrenclave_file:
        return str(Path(args.mrenclave_file).read_text().strip())
    if not args.mrenclave:
        raise CliError(
            "give --mrenclave HEX or --mrenclave-file "
            "(the build writes bazel-bin/enclave_manifests/acs.mrenclave)"
        )
    return str(args.mrenclave)


def cmd_trust(args: argparse.Namespace) -> int:
    if args.sim_dir:
        root = SimPki.load(args.sim_dir).root_pem
        print(f"WARNING: pinning the SIMULATED root CA of {args.sim_dir}: {SIM_WARNING}")
    else:
        root = intel_root_pem()
    profile = Profile(
        acs=args.acs,
        admin=args.admin or "",
        mrenclave_hex=_mrenclave(args),
        quote_root_pem=root.decode(),
        allowed_tcb_statuses=tuple(args.allow_tcb or ["UpToDate"]),
        admin_dir=str(args.admin_dir or ""),
    )
    trusted = client.connect(profile.acs, profile.pin, utcnow)
    measurement = trusted.bundle.acs_measurement
    path = profile.save(args.home)
    (args.home / "ca.pem").write_text(trusted.bundle.ca_certificate_pem)
    trusted.close()
    print(f"ACS {profile.acs} verified: MRENCLAVE {measurement.mrenclave.hex()}")
    print(
        f"TCB status {measurement.tcb_status}; pinned in {path}; ACS CA in {args.home / 'ca.pem'}"
    )
    return 0


def _admin(args: argparse.Namespace) -> tuple[client.TrustedAcs, grpc.Channel]:
    profile = Profile.load(args.home)
    if not profile.admin or not profile.admin_dir:
        raise CliError(
            "this profile has no admin endpoint; re-run `s3mlctl trust --admin ... --admin-dir ...`"
        )
    trusted = client.connect(profile.acs, profile.pin, utcnow)
    return trusted, trusted.admin_channel(profile.admin, Path(profile.admin_dir))


def cmd_audit(args: argparse.Namespace) -> int:
    trusted, channel = _admin(args)
    with channel:
        stub = audit_pb2_grpc.AuditStub(channel)
        if args.verify:
            result = stub.VerifyChain(audit_pb2.VerifyChainRequest(), timeout=60)
            print(f"audit chain intact: {result.events} events, head {result.head_hash.hex()}")
            return 0
        request = audit_pb2.QueryAuditRequest(
            subject=args.subject or "", action_prefix=args.action or "", limit=args.limit
        )
        for event in stub.QueryAudit(request, timeout=30).events:
            when = datetime.fromtimestamp(event.time.seconds, UTC).isoformat(timespec="seconds")
            secrets = ",".join(event.secret_names)
            print(
                f"{event.sequence:>6} {when} {event.action:<18} {event.subject:<24} "
                f"{event.mrenclave_hex[:16]:<16} {secrets} {event.detail}".rstrip()
            )
    trusted.close()
    return 0


def cmd_service_register(args: argparse.Namespace) -> int:
    trusted, channel = _admin(args)
    policy = types_pb2.AppraisalPolicy(
        mrenclave=[bytes.fromhex(m) for m in args.mrenclave or []],
        insecure_allow_debug=args.insecure_allow_debug,
        allowed_tcb_statuses=args.allow_tcb or [],
    )
    request = registry_pb2.RegisterServiceRequest(
        name=args.name,
        dns_names=args.dns or [],
        policy=policy,
        generated_secrets=args.secret or [],
        config=Path(args.config).read_bytes() if args.config else b"",
    )
    with channel:
        info = registry_pb2_grpc.RegistryStub(channel).RegisterService(request, timeout=30)
    trusted.close()
    secrets = ", ".join(info.secret_names)
    print(f"registered {info.name} (revision {info.revision}); secrets: {secrets}")
    return 0


def cmd_service_get(args: argparse.Namespace) -> int:
    trusted, channel = _admin(args)
    with channel:
        info = registry_pb2_grpc.RegistryStub(channel).GetService(
            registry_pb2.GetServiceRequest(name=args.name), timeout=30
        )
    trusted.close()
    print(f"service   {info.name} (revision {info.revision})")
    print(f"dns       {', '.join(info.dns_names)}")
    print(f"mrenclave {', '.join(m.hex() for m in info.policy.mrenclave)}")
    print(f"secrets   {', '.join(info.secret_names)}")
    if info.certificate_pem:
        cert = x509.load_pem_x509_certificate(info.certificate_pem.encode())
        print(f"identity  generation {info.identity_generation}, serial {cert.serial_number:x}")
    else:
        print("identity  none yet (created at the first attestation)")
    return 0


def cmd_client_cert(args: argparse.Namespace) -> int:
    """A key (kept here, 0600) and an ACS-issued client certificate for inference calls."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    trusted, channel = _admin(args)
    with channel:
        issued = registry_pb2_grpc.RegistryStub(channel).IssueClientCertificate(
            registry_pb2.IssueClientCertificateRequest(name=args.name, public_key=spki), timeout=30
        )
    trusted.close()
    out: Path = args.out
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(out / "client.key", key_pem(key))
    write_private(out / "client.pem", issued.certificate_pem.encode())
    write_private(out / "ca.pem", issued.ca_certificate_pem.encode())
    print(f"client certificate for '{args.name}' in {out} (client.pem, client.key, ca.pem)")
    return 0


def cmd_infer(args: argparse.Namespace) -> int:
    """Attested inference: verify the ACS, then classify each image over mutual TLS."""
    profile = Profile.load(args.home)
    labels = (
        Path(args.labels).read_text().splitlines() if args.labels else [str(i) for i in range(1000)]
    )
    trusted = client.connect(profile.acs, profile.pin, utcnow)
    model = AttestedModel(
        trusted, args.target, args.service or args.model.replace("_", "-"), args.credentials
    )
    try:
        for image in args.images:
            try:
                data = Path(image).read_bytes()
            except OSError as err:
                raise CliError(f"cannot read {image}: {err.strerror}") from err
            result = model.classify(data, args.model, labels)
            retried = f" after {result.retries} retries" if result.retries else ""
            print(f"{image}: {result.latency_ms:.1f} ms{retried}")
            for label, score in result.labels:
                print(f"  {score:6.3f}  {label}")
    finally:
        model.close()
        trusted.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="s3mlctl", description="s3ml command line")
    parser.add_argument("--home", type=Path, default=home(), help="profile directory (S3ML_HOME)")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="the simulated SGX platform").add_subparsers(
        dest="sim", required=True
    )
    init = sim.add_parser("init", help="create the simulated PKI (root CA, PCK chain, QE key)")
    init.add_argument("--dir", type=Path, required=True)
    init.set_defaults(func=cmd_sim_init)

    trust = sub.add_parser("trust", help="verify the ACS's quote and pin it")
    trust.add_argument("--acs", required=True, help="HOST:PORT of the ACS public port")
    trust.add_argument("--admin", help="HOST:PORT of the ACS admin port")
    trust.add_argument("--admin-dir", type=Path, help="directory with admin.pem/admin.key")
    trust.add_argument("--mrenclave", help="expected ACS MRENCLAVE (hex)")
    trust.add_argument("--mrenclave-file", help="file holding it, from the build")
    trust.add_argument(
        "--sim-dir", type=Path, help="pin the SIMULATED root of this PKI instead of Intel's"
    )
    trust.add_argument(
        "--allow-tcb", action="append", help="TCB status to accept (default UpToDate)"
    )
    trust.set_defaults(func=cmd_trust)

    audit = sub.add_parser("audit", help="query or verify the ACS audit log")
    audit.add_argument("--subject")
    audit.add_argument("--action", help="action prefix, e.g. secret.")
    audit.add_argument("--limit", type=int, default=100)
    audit.add_argument("--verify", action="store_true", help="recompute the hash chain")
    audit.set_defaults(func=cmd_audit)

    service = sub.add_parser("service", help="model services in the ACS").add_subparsers(
        dest="service", required=True
    )
    register = service.add_parser("register")
    register.add_argument("--name", required=True)
    register.add_argument("--dns", action="append")
    register.add_argument("--mrenclave", action="append", required=True)
    register.add_argument("--secret", action="append", help="secret generated inside the ACS")
    register.add_argument("--config", help="file delivered to instances")
    register.add_argument("--allow-tcb", action="append")
    register.add_argument("--insecure-allow-debug", action="store_true")
    register.set_defaults(func=cmd_service_register)
    get = service.add_parser("get")
    get.add_argument("--name", required=True)
    get.set_defaults(func=cmd_service_get)
    infer = sub.add_parser("infer", help="attested inference on image files")
    infer.add_argument("--model", required=True, help="model name, e.g. mobilenet_v1_int8")
    infer.add_argument("--target", required=True, help="HOST:PORT of the model (HAProxy frontend)")
    infer.add_argument("--service", help="ACS service of the model (default: model name with -)")
    infer.add_argument(
        "--credentials", type=Path, required=True, help="dir with client.pem/client.key"
    )
    infer.add_argument("--labels", help="class names, one per line")
    infer.add_argument("images", nargs="+")
    infer.set_defaults(func=cmd_infer)

    cluster_status.register(sub)

    cert = sub.add_parser("client-cert", help="issue a client certificate for inference")
    cert.add_argument("--name", required=True)
    cert.add_argument("--out", type=Path, required=True)
    cert.set_defaults(func=cmd_client_cert)
    volume_cmd.register(sub)
    policy_cmd.register(sub)
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    func: Command = args.func
    try:
        return func(args)
    except grpc.RpcError as err:
        print(f"s3mlctl: {err.code().name}: {err.details()}", file=sys.stderr)
    except (
        CliError,
        cluster_status.StatusError,
        client.TrustError,
        InferenceClientError,
        FileNotFoundError,
        PermissionError,
        ValueError,
    ) as err:
        print(f"s3mlctl: {err}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
