"""Assembly of a model-server replica: attest, unseal models, serve over mTLS only.

At start the replica attests to the ACS through its TEE platform and receives
the service's shared identity and its model keys; if attestation fails it does
not start. It serves only mutual TLS with that identity, to peers holding
ACS-issued certificates (clients, replicas, administrators), checking the ACS
CRL on every call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from opentelemetry import trace

from inference import grpc_predict_v2_pb2_grpc as pb_grpc
from s3ml.attest.v1 import trust_pb2, trust_pb2_grpc
from s3ml.model_server.v1 import dataplane_pb2 as dp
from services.attest import client, mtls
from services.attest.ca import SPIFFE_PREFIX, utcnow
from services.attest.platform.base import SIM_WARNING, TeePlatform
from services.attest.platform.gramine import GramineSgxPlatform
from services.attest.platform.sim import SimPlatform
from services.attest.quote.roots import intel_root_pem
from services.attest.server import sim_enclave
from services.attest.sim.pki import SimPki
from services.model_server import dataplane, native_spans, repository
from services.model_server.api import CODES, VERSION, Admission, Identity, InferenceServicer
from services.model_server.config import ServerConfig
from services.rpc.status import ErrorMappingInterceptor
from services.scaler.epc import enclave_memory
from services.scaler.epc.errors import EpcError
from services.scaler.epc.paging import PagingCost
from services.scaler.epc.pool import EpcPool
from services.telemetry.propagation import ServerTracing

log = logging.getLogger("model-server")
DEFAULT_MANIFEST = (
    Path(__file__).absolute().parents[2] / "enclave_manifests" / "model_server.manifest"
)
CRL_REFRESH_SECONDS = 30.0


class StartupError(Exception):
    """The replica must not serve: attestation or model loading failed."""


def make_platform(config: ServerConfig) -> TeePlatform:
    if config.simulated:
        enclave = sim_enclave(config.sim_dir, config.manifest or DEFAULT_MANIFEST, isv_prod_id=2)
        return SimPlatform(config.sim_dir, enclave)
    return GramineSgxPlatform()


def acs_pin(config: ServerConfig) -> client.AcsPin:
    root = SimPki.load(config.sim_dir).root_pem if config.simulated else intel_root_pem()
    return client.AcsPin(config.acs_mrenclave, root)


# Inference is open to every ACS-issued identity: clients, replicas, admins.
ALLOWED_ROLES = (SPIFFE_PREFIX + "client/", SPIFFE_PREFIX + "service/", SPIFFE_PREFIX + "admin/")


@dataclass(frozen=True)
class Plane:
    """What serves the replica's port: the in-process gRPC server, or the native child."""

    port: int
    stop: Callable[[float], None]
    crl_changed: Callable[[], None]
    epc: enclave_memory.EnclaveMemory  # the replica's sim EPC account
    failure: Callable[[], str | None]  # why it no longer serves, if it does not


@dataclass
class RunningServer:
    port: int
    identity: client.InstanceIdentity
    stop_event: threading.Event
    plane: Plane

    def failure(self) -> str | None:
        """Why this replica no longer serves (its data plane died), or None."""
        return self.plane.failure()

    def stop(self, grace: float = 2.0) -> None:
        self.stop_event.set()
        self.plane.stop(grace)
        self.plane.epc.close()


def _provision(config: ServerConfig) -> tuple[client.TrustedAcs, client.InstanceIdentity]:
    try:
        trusted = client.connect(config.acs, acs_pin(config), utcnow)
        ident = client.provision(
            trusted, make_platform(config), config.service, config.replica, config.node
        )
    except (client.TrustError, grpc.RpcError, OSError) as err:
        detail = (
            f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else str(err)
        )
        raise StartupError(
            f"attestation to the ACS at {config.acs} failed, refusing to start: {detail}"
        ) from err
    return trusted, ident


def _load_models(config: ServerConfig, ident: client.InstanceIdentity) -> repository.Registry:
    # A native plane runs its own interpreters; here one per model checks the model loads.
    pool = 1 if config.data_plane == "native" else config.pool
    loaded = []
    for name in config.models:
        key = ident.secrets.get(repository.secret_name(name))
        if key is None:
            raise StartupError(
                f"the ACS released no key for model '{name}' "
                f"(secret {repository.secret_name(name)}); "
                "register it with the service"
            )
        versions = sorted(p.name for p in (config.models_dir / name).glob("*") if p.is_dir())
        if not versions:
            raise StartupError(f"model '{name}' has no version under {config.models_dir / name}")
        for version in versions:
            try:
                loaded.append(
                    repository.load(config.models_dir, name, version, key, pool, config.threads)
                )
            except repository.ModelLoadError as err:
                raise StartupError(str(err)) from err
    return repository.Registry(loaded)


def _model_bytes(config: ServerConfig) -> int:
    return sum(
        p.stat().st_size for m in config.models for p in (config.models_dir / m).rglob("*.sealed")
    )


def _epc(config: ServerConfig, rss_before: int, rss_after: int) -> enclave_memory.EnclaveMemory:
    """Sim: account this replica's working set (what loading its models added to the
    serving process) in its node's shared EPC pool."""
    if config.epc_pool is None:
        return enclave_memory.NoEpc()
    size = enclave_memory.working_set(rss_before, rss_after, _model_bytes(config))
    log.info("EPC working set %.1f MiB in pool %s", size / 2**20, config.epc_pool)
    try:
        pool = EpcPool(config.epc_pool, config.node, cost=PagingCost(config.epc_extra_delay_us))
        name = f"{config.node}/{config.replica}"
        return enclave_memory.SimEnclaveMemory.register(pool, name, size)
    except (EpcError, OSError) as err:
        raise StartupError(f"cannot account EPC in {config.epc_pool}: {err}") from err


def _refresh_crl(
    trusted: client.TrustedAcs,
    revocations: mtls.RevocationList,
    ca: x509.Certificate,
    stop: threading.Event,
    changed: Callable[[], None] = lambda: None,
) -> None:
    stub = trust_pb2_grpc.TrustStub(trusted.channel)
    generation = 0
    while not stop.wait(CRL_REFRESH_SECONDS):
        try:
            bundle = stub.GetTrustBundle(
                trust_pb2.GetTrustBundleRequest(known_generation=generation), timeout=10
            )
        except grpc.RpcError as err:
            log.warning("trust bundle refresh failed (%s); keeping the last CRL", err.code().name)
            continue
        if bundle.crl_pem:
            revocations.update(bundle.crl_pem.encode(), ca)
            generation = bundle.generation
            changed()


def start(config: ServerConfig) -> RunningServer:
    if config.simulated:
        log.warning(SIM_WARNING)
    attributes = {
        "s3ml.service": config.service,
        "s3ml.node": config.node,
        "s3ml.replica": config.replica,
        "s3ml.platform": config.platform,
    }
    with trace.get_tracer("s3ml.model_server").start_as_current_span(
        "model_server.start", attributes=attributes
    ):
        trusted, ident = _provision(config)
        rss_before = enclave_memory.resident_bytes()
        registry = _load_models(config, ident)
    ca = x509.load_pem_x509_certificate(ident.ca_pem)
    revocations = mtls.RevocationList()
    revocations.update(ident.crl_pem, ca)
    serve = _serve_native if config.data_plane == "native" else _serve_python
    plane = serve(config, ident, registry, revocations, rss_before)
    stop = threading.Event()
    threading.Thread(
        target=_refresh_crl, args=(trusted, revocations, ca, stop, plane.crl_changed), daemon=True
    ).start()
    log.info(
        "serving %s (%s) on %s port %d over attested mTLS (%s data plane), identity generation %d",
        config.service,
        ", ".join(config.models),
        config.listen,
        plane.port,
        config.data_plane,
        ident.generation,
    )
    # Not kept here: the Python plane's servicer holds the registry; with the native plane
    # the models now live in the child, and this copy (and its checking interpreters) goes.
    return RunningServer(plane.port, ident, stop, plane)


def _serve_python(
    config: ServerConfig,
    ident: client.InstanceIdentity,
    registry: repository.Registry,
    revocations: mtls.RevocationList,
    rss_before: int,
) -> Plane:
    epc = _epc(config, rss_before, enclave_memory.resident_bytes())
    admission = Admission(sum(m.pool.size for m in registry.all()), config.max_queue)
    me = Identity(config.node, config.replica, config.platform)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.workers),
        interceptors=[
            ServerTracing(),
            mtls.PeerPolicyInterceptor(mtls.has_role(ALLOWED_ROLES), revocations, "inference API"),
            ErrorMappingInterceptor(CODES),
        ],
        options=[
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.so_reuseport", 1),
        ],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(registry, admission, me, config.max_batch, epc), server
    )
    creds = mtls.server_credentials(ident.service_chain_pem, ident.service_key_pem, ident.ca_pem)
    port = server.add_secure_port(config.listen, creds)
    server.start()

    def stop(grace: float) -> None:
        server.stop(grace).wait()

    return Plane(port, stop, lambda: None, epc, lambda: None)  # lives and dies with us


def _peer_policy(revocations: mtls.RevocationList) -> dp.PeerPolicy:
    return dp.PeerPolicy(
        allowed_role_prefixes=list(ALLOWED_ROLES),
        revoked_serials_hex=sorted(format(s, "x") for s in revocations.serials()),
    )


def _serve_native(
    config: ServerConfig,
    ident: client.InstanceIdentity,
    registry: repository.Registry,
    revocations: mtls.RevocationList,
    rss_before: int,
) -> Plane:
    del rss_before  # the child measures what its own models take (Ready.models_resident_bytes)
    start = dp.Start(
        listen=config.listen,
        tls_chain_pem=ident.service_chain_pem,
        tls_key_pem=ident.service_key_pem,
        ca_pem=ident.ca_pem,
        models=[dataplane.model_message(m) for m in registry.all()],
        limits=dp.Limits(
            interpreters_per_model=config.pool,
            threads_per_interpreter=config.threads,
            workers=config.workers,
            max_queue=config.max_queue,
            max_batch=config.max_batch,
            max_message_bytes=config.max_message_bytes,
        ),
        peers=_peer_policy(revocations),
        server_version=VERSION,
        epc=dp.SimEpc(
            account=config.epc_pool is not None, extra_delay_us=config.epc_extra_delay_us
        ),
    )
    me = Identity(config.node, config.replica, config.platform)
    try:
        plane = dataplane.NativeDataPlane(start, lambda calls: native_spans.emit(calls, me))
    except dataplane.DataPlaneError as err:
        raise StartupError(str(err)) from err
    finally:
        start.Clear()  # drop this copy of the key and the models
    try:  # the child's enclave: what building its interpreters added to its memory
        epc = _epc(config, 0, plane.models_resident_bytes)
    except StartupError:
        plane.stop()
        raise
    if isinstance(epc, enclave_memory.SimEnclaveMemory):
        plane.account_epc_with(epc.account)
    dataplane.export_metrics(plane)
    return Plane(
        plane.port,
        plane.stop,
        lambda: plane.update_peers(_peer_policy(revocations)),
        epc,
        plane.exit_reason,
    )
