"""Assembly of a running ACS: platform, store, verifier, gRPC servers.

The public port serves instances and clients over RA-TLS (server-authenticated:
instances have no certificate before they attest); the admin port requires an
ACS-issued admin client certificate. Administrative methods reached on the
public port are refused with UNAUTHENTICATED and a pointer to the admin port.
StakeholderPolicies is served on both: its requests carry their own
authentication (a stakeholder's signature, a workload's attestation).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from s3ml.attest.v1 import (
    audit_pb2_grpc,
    provisioning_pb2_grpc,
    registry_pb2_grpc,
    stakeholder_pb2_grpc,
    trust_pb2_grpc,
)
from s3ml.common.v1 import platform_pb2
from services.attest import measurement, ratls
from services.attest.acs import Acs
from services.attest.api import convert
from services.attest.api import status as acs_status
from services.attest.api.servicers import (
    AuditServicer,
    ProvisioningServicer,
    RegistryServicer,
    SelfDescription,
    TrustServicer,
)
from services.attest.api.stakeholder import StakeholderServicer
from services.attest.ca import SPIFFE_PREFIX, key_pem, pem, utcnow
from services.attest.collateral_source import (
    CollateralSource,
    FileCollateral,
    SimPcsCollateral,
)
from services.attest.config import AcsConfig
from services.attest.mtls import PeerPolicyInterceptor, RevocationList, has_role
from services.attest.nonce import NonceBook
from services.attest.platform.base import SIM_WARNING, TeePlatform
from services.attest.platform.gramine import GramineSgxPlatform
from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.quote.roots import intel_root_pem
from services.attest.quote.verify import QuoteVerifier
from services.attest.sealing import Sealer
from services.attest.sim.pki import SimPki, write_private
from services.attest.stakeholder.evidence import VerdictTrust
from services.attest.stakeholder.service import Stakeholders
from services.attest.store.sqlite import SqliteStore
from services.telemetry.propagation import ServerTracing

log = logging.getLogger("acs")
ADMIN_SERVICES = ("/s3ml.attest.v1.Registry/", "/s3ml.attest.v1.Audit/")
VERSION = "0.1.0"
DEFAULT_MANIFEST = Path(__file__).absolute().parents[2] / "enclave_manifests" / "acs.manifest"


def sim_signer(sim_dir: Path) -> bytes:
    """MRSIGNER of the development enclave-signing key (created on first use)."""
    path = sim_dir / "enclave-signer.pem"
    if not path.exists():
        key = rsa.generate_private_key(public_exponent=3, key_size=3072)
        write_private(
            path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise TypeError(f"{path} is not an RSA key")
    return measurement.mrsigner(loaded.public_key())


def sim_enclave(
    sim_dir: Path, manifest: Path, isv_prod_id: int = 1, isv_svn: int = 1
) -> SimEnclave:
    """The identity a simulated enclave built from `manifest` has."""
    root = manifest.absolute().parents[1]
    mrenclave = measurement.sim_mrenclave(manifest.read_text(), root)
    return SimEnclave(mrenclave, sim_signer(sim_dir), isv_prod_id, isv_svn)


def make_platform(config: AcsConfig) -> TeePlatform:
    if config.simulated:
        manifest = config.manifest or DEFAULT_MANIFEST
        return SimPlatform(config.sim_dir, sim_enclave(config.sim_dir, manifest))
    return GramineSgxPlatform()


def make_trust(config: AcsConfig) -> tuple[QuoteVerifier, CollateralSource]:
    if config.simulated:
        return QuoteVerifier(SimPki.load(config.sim_dir).root_pem), SimPcsCollateral(config.sim_dir)
    assert config.collateral_file is not None  # checked when parsing the config
    return QuoteVerifier(intel_root_pem()), FileCollateral(config.collateral_file)


@dataclass
class RunningAcs:
    acs: Acs
    public: grpc.Server
    admin: grpc.Server
    public_port: int
    admin_port: int
    ratls_cert_pem: bytes
    me: SelfDescription
    store: SqliteStore
    stakeholders: Stakeholders

    def stop(self, grace: float = 2.0) -> None:
        self.public.stop(grace).wait()
        self.admin.stop(grace).wait()
        self.store.close()


def ensure_admin_credentials(acs: Acs, directory: Path) -> None:
    """First start: an admin client certificate for `s3mlctl`, written 0600."""
    if (directory / "admin.pem").exists():
        return
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = acs.ca.issue_admin("admin", key.public_key(), utcnow())
    write_private(directory / "admin.key", key_pem(key))
    write_private(directory / "ca.pem", pem(acs.ca.cert))
    write_private(directory / "admin.pem", pem(cert))


class _AdminGate(grpc.ServerInterceptor):
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if not handler_call_details.method.startswith(ADMIN_SERVICES):
            return continuation(handler_call_details)

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "administrative calls need the admin port and an admin client certificate "
                "(STATE/admin/admin.pem; see `s3mlctl --admin-dir`)",
            )

        return grpc.unary_unary_rpc_method_handler(refuse)


def load_verdict_key(path: Path | None) -> ec.EllipticCurvePublicKey | None:
    """The TPM/IMA verifier's verdict-signing key, from a PEM key or certificate."""
    if path is None:
        return None
    data = path.read_bytes()
    key = (
        x509.load_pem_x509_certificate(data).public_key()
        if b"CERTIFICATE" in data
        else serialization.load_pem_public_key(data)
    )
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError(f"{path}: the verifier key must be an ECDSA P-256 key")
    return key


def start(config: AcsConfig, workers: int = 16) -> RunningAcs:
    os.umask(0o077)
    config.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    platform = make_platform(config)
    verifier, collateral = make_trust(config)
    store = SqliteStore(config.state_dir / "acs.db")
    label = "SIMULATED platform" if config.simulated else "SGX"
    acs = Acs(
        store,
        Sealer(platform.sealing_key()),
        verifier,
        collateral,
        NonceBook(config.nonce_ttl_seconds),
        utcnow,
        label,
    )
    ensure_admin_credentials(acs, config.state_dir / "admin")
    stakeholders = Stakeholders(
        store,
        Sealer(platform.sealing_key()),
        acs.check_quote,
        acs.nonces,
        VerdictTrust(load_verdict_key(config.verdict_key), config.verdict_max_age_seconds),
        time.time,
    )
    now = utcnow()
    creds = ratls.create(platform, list(config.dns_names), now)
    own = ratls.verify(creds.cert_pem, verifier, collateral.collateral(now), now)
    me = SelfDescription(
        status=platform_pb2.ComponentStatus(
            component="acs",
            version=VERSION,
            platform=platform_pb2.PLATFORM_SIM
            if config.simulated
            else platform_pb2.PLATFORM_GRAMINE_SGX,
            platform_warning=SIM_WARNING if config.simulated else "",
        ),
        measurement=convert.measurement(own),
        collateral_json=collateral.collateral(now).to_json(),
        started=time.time(),
    )
    revocations = RevocationList()
    bundle = acs.trust_bundle()
    revocations.update(bundle.crl_pem, acs.ca.cert)

    public = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers),
        interceptors=[ServerTracing(), _AdminGate(), acs_status.interceptor()],
    )
    admin = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[
            ServerTracing(),
            PeerPolicyInterceptor(has_role(SPIFFE_PREFIX + "admin/"), revocations, "admin API"),
            acs_status.interceptor(),
        ],
    )
    provisioning = ProvisioningServicer(acs, me)
    trust = TrustServicer(acs, me)
    provisioning_pb2_grpc.add_ProvisioningServicer_to_server(provisioning, public)
    trust_pb2_grpc.add_TrustServicer_to_server(trust, public)
    policies = StakeholderServicer(stakeholders)
    stakeholder_pb2_grpc.add_StakeholderPoliciesServicer_to_server(policies, public)
    stakeholder_pb2_grpc.add_StakeholderPoliciesServicer_to_server(policies, admin)
    for server in (admin,):
        provisioning_pb2_grpc.add_ProvisioningServicer_to_server(provisioning, server)
        trust_pb2_grpc.add_TrustServicer_to_server(trust, server)
        registry_pb2_grpc.add_RegistryServicer_to_server(RegistryServicer(acs), server)
        audit_pb2_grpc.add_AuditServicer_to_server(AuditServicer(acs), server)
    tls = grpc.ssl_server_credentials([(creds.key_pem, creds.cert_pem)])
    mtls = grpc.ssl_server_credentials(
        [(creds.key_pem, creds.cert_pem)],
        root_certificates=pem(acs.ca.cert),
        require_client_auth=True,
    )
    public_port = public.add_secure_port(config.listen, tls)
    admin_port = admin.add_secure_port(config.admin_listen, mtls)
    public.start()
    admin.start()
    if config.simulated:
        log.warning(SIM_WARNING)
    log.info(
        "ACS serving: public %s (port %d), admin %s (port %d), MRENCLAVE %s",
        config.listen,
        public_port,
        config.admin_listen,
        admin_port,
        own.report.mr_enclave.hex(),
    )
    return RunningAcs(
        acs, public, admin, public_port, admin_port, creds.cert_pem, me, store, stakeholders
    )
