"""`make up`: the local attested serving cluster on the sim platform.

Starts the ACS, one model-server replica per model on each emulated node
(every replica attests and gets its service's identity and model key),
HAProxy as the L4 frontend of each model, and Prometheus; provisions the demo
service owner's services once (a later run reuses the state directory);
runs one attested inference on a real photo; serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from deploy.local import control, nodes, rendering
from deploy.local.cluster import Cluster, ClusterConfigError, load, service_name
from deploy.local.replicas import LocalLauncher, ReplicaContext
from deploy.local.supervisor import StartError, Supervisor
from s3ml.attest.v1 import registry_pb2, registry_pb2_grpc, types_pb2
from services.attest import client
from services.attest.ca import key_pem, utcnow
from services.attest.platform.base import SIM_WARNING
from services.attest.sim.pki import SimPki, write_private
from services.client.inference import AttestedModel, InferenceClientError
from services.model_server.repository import seal_model, secret_name
from services.telemetry import lifecycle, tracing

HERE = Path(__file__).absolute().parent
WORKSPACE = HERE.parents[1]
ZOO = WORKSPACE / "services" / "model_server" / "zoo"
MANIFESTS = WORKSPACE / "enclave_manifests"


def _pin(sim_dir: Path) -> client.AcsPin:
    mrenclave = bytes.fromhex((MANIFESTS / "acs.mrenclave").read_text().strip())
    return client.AcsPin(mrenclave, SimPki.load(sim_dir).root_pem)


def check_state_dir(state: Path) -> None:
    try:
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = state / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise SystemExit(
            f"make up: cannot write the state directory {state} ({err.strerror}); "
            "choose another with STATE=/path or fix its permissions"
        ) from err


def trust_this_build(
    registry: registry_pb2_grpc.RegistryStub, info: registry_pb2.ServiceInfo, mrenclave: bytes
) -> None:
    """A rebuilt model server has a new MRENCLAVE, which the ACS rightly refuses. The
    local cluster's operator owns its services, so a later run moves each service's
    policy to this build's measurement (and only to it: the old build is not kept)."""
    if list(info.policy.mrenclave) == [mrenclave]:
        return
    policy = types_pb2.AppraisalPolicy()
    policy.CopyFrom(info.policy)
    del policy.mrenclave[:]
    policy.mrenclave.append(mrenclave)
    registry.UpdateService(
        registry_pb2.UpdateServiceRequest(
            name=info.name, expected_revision=info.revision, policy=policy
        ),
        timeout=10,
    )
    print(
        f"  service {info.name}: now trusts this build's model server (MRENCLAVE {mrenclave.hex()[:16]}…)"
    )


def provision(cluster: Cluster, state: Path, acs: client.TrustedAcs) -> None:
    """First run: seal each model, register its service with the key, issue a demo client
    cert. Later runs: keep all that, and trust this build's model server."""
    with acs.admin_channel(f"127.0.0.1:{cluster.acs_admin_port}", state / "acs" / "admin") as admin:
        registry = registry_pb2_grpc.RegistryStub(admin)
        replica_mrenclave = bytes.fromhex(
            (MANIFESTS / "model_server.mrenclave").read_text().strip()
        )
        for model in cluster.models:
            service = service_name(model)
            try:
                info = registry.GetService(registry_pb2.GetServiceRequest(name=service), timeout=10)
                trust_this_build(registry, info, replica_mrenclave)
                continue  # provisioned by an earlier run: same identity, same key
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            key = os.urandom(32)
            seal_model(ZOO / f"{model}.tflite", ZOO / f"{model}.json", state / "models", key)
            registry.RegisterService(
                registry_pb2.RegisterServiceRequest(
                    name=service,
                    dns_names=[f"{service}.s3ml.local", "localhost"],
                    policy=types_pb2.AppraisalPolicy(mrenclave=[replica_mrenclave]),
                    provided_secrets=[types_pb2.Secret(name=secret_name(model), value=key)],
                ),
                timeout=10,
            )
            print(f"  provisioned service {service} (model sealed, key held by the ACS)")
        demo = state / "client"
        if not (demo / "client.pem").exists():
            private = ec.generate_private_key(ec.SECP256R1())
            spki = private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            issued = registry.IssueClientCertificate(
                registry_pb2.IssueClientCertificateRequest(name="demo-client", public_key=spki),
                timeout=10,
            )
            demo.mkdir(mode=0o700, exist_ok=True)
            write_private(demo / "client.key", key_pem(private))
            write_private(demo / "client.pem", issued.certificate_pem.encode())


def start_all(
    cluster: Cluster, state: Path, sup: Supervisor, binaries: dict[str, Path]
) -> tuple[client.TrustedAcs, control.RunningScaler]:
    sim = state / "sim"
    if not (sim / "root.pem").exists():
        SimPki.create(sim)
    verdicts = nodes.start(
        cluster,
        state,
        sup,
        binaries,
        sorted((WORKSPACE / "services" / "model_server").glob("*.py")),
    )
    print("\n".join(verdicts))
    sup.start("acs", [
        str(binaries["acs"]), "--state-dir", str(state / "acs"), "--sim-dir", str(sim),
        "--listen", f"127.0.0.1:{cluster.acs_port}", "--admin-listen", f"127.0.0.1:{cluster.acs_admin_port}",
        "--metrics-listen", f"127.0.0.1:{cluster.acs_metrics_port}", *cluster.trace_flags(state, "acs"),
        "--verdict-key", str(state / "verifier" / "verdict-signing.pub.pem"),
    ])  # fmt: skip
    for node in range(cluster.nodes):  # the node's simulated EPC, as its SGX driver would report it
        sup.start(f"epc-exporter-node-{node}", [
            str(binaries["epc_exporter"]), "--node", f"node-{node}", "--source", "sim",
            "--state-dir", str(state), "--listen", f"127.0.0.1:{cluster.epc_exporter_port(node)}",
        ])  # fmt: skip
    acs = client.connect(f"127.0.0.1:{cluster.acs_port}", _pin(sim), utcnow)
    provision(cluster, state, acs)
    context = ReplicaContext(
        cluster, state, binaries["model_server"], (MANIFESTS / "acs.mrenclave").read_text().strip()
    )
    for replica in cluster.replicas():
        sup.start(replica.name, context.argv(replica, replica.name))
    (state / "haproxy.cfg").write_text(rendering.haproxy(cluster, state))
    frontends = tuple(cluster.frontend(m) for m in cluster.models)
    sup.start("haproxy", ["haproxy", "-f", str(state / "haproxy.cfg"), "-db"], ready=None,
              listens=(*frontends, cluster.haproxy_metrics_port))  # fmt: skip
    (state / "endpoints.json").write_text(rendering.endpoints(cluster, state))
    (state / "prometheus.yml").write_text(rendering.prometheus(cluster))
    sup.start("prometheus", [
        "prometheus", f"--config.file={state / 'prometheus.yml'}", f"--storage.tsdb.path={state / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{cluster.prometheus_port}",
    ], ready=None, listens=(cluster.prometheus_port,))  # fmt: skip
    scaler = control.start(cluster, LocalLauncher(context, sup), str(state / "haproxy.sock"))
    return acs, scaler


def demo_inference(cluster: Cluster, state: Path, acs: client.TrustedAcs, image: Path) -> str:
    labels = (ZOO / "imagenet_labels.txt").read_text().splitlines()
    model = (
        "efficientnet_lite0_int8"
        if "efficientnet_lite0_int8" in cluster.models
        else cluster.models[0]
    )
    target = f"127.0.0.1:{cluster.frontend(model)}"
    attested = AttestedModel(acs, target, service_name(model), state / "client")
    try:
        result = attested.classify(image.read_bytes(), model, labels)
    finally:
        attested.close()
    lines = [
        f"  attested inference: {model} via HAProxy {target} on {image.name}: {result.latency_ms:.1f} ms"
    ]
    lines += [f"    {score:6.3f}  {label}" for label, score in result.labels]
    return "\n".join(lines)


def banner(cluster: Cluster, state: Path) -> str:
    fronts = "\n".join(
        f"    {m:<24} 127.0.0.1:{cluster.frontend(m)}  (service {service_name(m)})"
        for m in cluster.models
    )
    return f"""
s3ml local cluster is up. {SIM_WARNING}
  ACS            127.0.0.1:{cluster.acs_port} (admin 127.0.0.1:{cluster.acs_admin_port}, MRENCLAVE in bazel-bin/enclave_manifests/acs.mrenclave)
  models (KServe v2 gRPC over mutual TLS, through HAProxy TCP frontends):
{fronts}
  replicas       {cluster.nodes} emulated nodes x {len(cluster.models)} models = {len(cluster.replicas())} attested model servers
  host integrity TPM/IMA verifier 127.0.0.1:{cluster.verifier_port}; host agents 127.0.0.1:{cluster.agent_port}+n (one swtpm per node)
  Prometheus     http://127.0.0.1:{cluster.prometheus_port}
  scaler         EPC-aware controller (Algorithm 1 on HAProxy weights, scale-out to free EPC) 127.0.0.1:{cluster.scaler_port}
  EPC            simulated per node (93.5 MiB usable, real AES-GCM paging cost); exporters 127.0.0.1:{cluster.epc_exporter_port(0)}-n
  state          {state} (sealed ACS state, sealed models, demo client certificate in client/)
  logs, traces   {state / "logs"}, {state / "traces"} (one trace per request, client to replica)
  health         /metrics, /healthz, /readyz on every component (endpoints.json lists them)
  status         bazel-bin/services/cli/s3mlctl status --state {state}
  processes      restarted with backoff when they die; pids in {state / "run"}
Press Ctrl-C to stop.
"""


def main() -> int:
    parser = argparse.ArgumentParser(prog="make up")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=HERE / "cluster.yaml")
    parser.add_argument(
        "--image", type=Path, help="photo for the demo inference (default: a scikit-image photo)"
    )
    parser.add_argument(
        "--acs-binary", type=Path, default=WORKSPACE / "services" / "attest" / "acs"
    )
    parser.add_argument(
        "--model-server-binary",
        type=Path,
        default=WORKSPACE / "services" / "model_server" / "server",
    )
    parser.add_argument(
        "--exit-after-demo", action="store_true", help="stop once the demo inference ran"
    )
    args = parser.parse_args()
    for tool in ("haproxy", "prometheus"):
        if shutil.which(tool) is None:
            raise SystemExit(f"make up: {tool} is not installed; run `make bootstrap` as root")
    try:
        cluster = load(args.config)
    except ClusterConfigError as err:
        raise SystemExit(f"make up: {err}") from err
    state = args.state_dir.absolute()
    check_state_dir(state)
    image = args.image or _sample_photo(state)
    sup = Supervisor(state / "logs", state / "run")
    spans = tracing.configure(
        "s3ml-client", "sim", cluster.otlp_endpoint, state / "traces" / "client.jsonl"
    )
    stop = lifecycle.stop_requested()
    started = time.monotonic()
    scaler: control.RunningScaler | None = None
    try:
        binaries = {
            "acs": args.acs_binary,
            "model_server": args.model_server_binary,
            "host_agent": WORKSPACE / "services" / "policy" / "host_agent",
            "verifier": WORKSPACE / "services" / "policy" / "verifier",
            "epc_exporter": WORKSPACE / "services" / "scaler" / "exporter" / "exporter",
        }
        acs, scaler = start_all(cluster, state, sup, binaries)
        print(demo_inference(cluster, state, acs, image))
        print(banner(cluster, state) + f"  (up in {time.monotonic() - started:.0f} s)", flush=True)
        while not args.exit_after_demo and not stop.wait(0.5):
            for line in sup.restart_dead():
                print(f"make up: {line}", flush=True)
        acs.close()
    except (StartError, InferenceClientError, client.TrustError, grpc.RpcError) as err:
        print(f"make up: {err}", file=sys.stderr)
        return 1
    finally:
        if scaler is not None:
            scaler.stop()
        sup.stop_all()
        spans.shutdown()
        print("make up: stopped every component", flush=True)
    return 0


def _sample_photo(state: Path) -> Path:
    import skimage.data  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    path = state / "coffee.jpg"
    if not path.exists():
        Image.fromarray(skimage.data.coffee()).save(path)  # type: ignore[no-untyped-call]
    return path


if __name__ == "__main__":
    sys.exit(main())
