"""Client side of the ACS: bootstrap trust in it, attest an instance, administer.

Trust is never assumed: the ACS's RA-TLS certificate must carry a quote that
verifies under the pinned root, shows the pinned ACS measurement, and binds
the certificate's key. Only then is the ACS CA (from the trust bundle, fetched
over that pinned channel) used to trust service certificates.
"""

from __future__ import annotations

import hmac
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.attest.v1 import (
    provisioning_pb2,
    provisioning_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
    types_pb2,
)
from services.attest import envelope, ratls
from services.attest.acs import attest_context
from services.attest.appraisal import binding
from services.attest.ca import key_pem
from services.attest.platform.base import TeePlatform
from services.attest.quote.collateral import Collateral
from services.attest.quote.verify import QuoteVerifier
from services.telemetry.propagation import traced_channel

T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class TrustError(Exception):
    """The ACS could not be verified against the pins; nothing was trusted."""


@dataclass(frozen=True)
class AcsPin:
    """What a client insists the ACS is."""

    mrenclave: bytes
    quote_root_pem: bytes
    allowed_tcb_statuses: frozenset[str] = frozenset({"UpToDate"})


@dataclass
class TrustedAcs:
    target: str
    server_name: str
    cert_pem: bytes
    bundle: types_pb2.TrustBundle
    channel: grpc.Channel

    def admin_channel(self, admin_target: str, admin_dir: Path) -> grpc.Channel:
        creds = grpc.ssl_channel_credentials(
            root_certificates=self.cert_pem,
            private_key=(admin_dir / "admin.key").read_bytes(),
            certificate_chain=(admin_dir / "admin.pem").read_bytes(),
        )
        return grpc.secure_channel(admin_target, creds, _name_override(self.server_name))

    def close(self) -> None:
        self.channel.close()


@dataclass(frozen=True)
class InstanceIdentity:
    """Everything an attested instance holds after provisioning (in memory only)."""

    service_chain_pem: bytes
    service_key_pem: bytes
    instance_cert_pem: bytes
    instance_key_pem: bytes
    ca_pem: bytes
    crl_pem: bytes
    secrets: dict[str, bytes] = field(repr=False)
    config: bytes
    generation: int
    measurement: types_pb2.EnclaveMeasurement


def _name_override(name: str) -> list[tuple[str, str]]:
    return [("grpc.ssl_target_name_override", name)]


def fetch_certificate(target: str, timeout: float = 5.0) -> bytes:
    """The server's certificate as presented in the TLS handshake (not yet trusted)."""
    host, _, port = target.rpartition(":")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # verified below, by its quote, not by a CA
    context.set_alpn_protocols(["h2"])
    with (
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock,
        context.wrap_socket(sock) as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise TrustError(f"{target} presented no certificate")
    return ssl.DER_cert_to_PEM_cert(der).encode()


def with_retries(
    call: Callable[[], T],
    attempts: int = 6,
    base: float = 0.1,
    on_retry: Callable[[grpc.RpcError], None] | None = None,
) -> T:
    """Retries UNAVAILABLE and DEADLINE_EXCEEDED with exponential backoff."""
    for attempt in range(attempts):
        try:
            return call()
        except grpc.RpcError as err:
            if err.code() not in RETRYABLE or attempt == attempts - 1:
                raise
            if on_retry is not None:
                on_retry(err)
            time.sleep(base * 2**attempt)
    raise AssertionError("unreachable")


def connect(target: str, pin: AcsPin, now: Callable[[], datetime]) -> TrustedAcs:
    """Verifies the ACS at `target` against `pin` and returns a pinned channel."""
    cert_pem = fetch_certificate(target)
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        server_name = names.get_values_for_type(x509.DNSName)[0]
    except (x509.ExtensionNotFound, IndexError) as err:
        raise TrustError("ACS certificate has no DNS name") from err
    creds = grpc.ssl_channel_credentials(root_certificates=cert_pem)
    channel = traced_channel(grpc.secure_channel(target, creds, _name_override(server_name)))
    try:
        bundle = with_retries(
            lambda: trust_pb2_grpc.TrustStub(channel).GetTrustBundle(
                trust_pb2.GetTrustBundleRequest(), timeout=10
            )
        )
        collateral = Collateral.from_json(bundle.acs_collateral_json)
        verified = ratls.verify(cert_pem, QuoteVerifier(pin.quote_root_pem), collateral, now())
    except Exception as err:
        channel.close()
        raise TrustError(f"ACS at {target} failed verification: {err}") from err
    report = verified.report
    problems = []
    if not hmac.compare_digest(report.mr_enclave, pin.mrenclave):
        problems.append(f"MRENCLAVE {report.mr_enclave.hex()} is not the pinned one")
    if report.debug:
        problems.append("the ACS runs as a DEBUG enclave")
    if verified.tcb_status not in pin.allowed_tcb_statuses:
        problems.append(f"TCB status {verified.tcb_status} is not allowed")
    if problems:
        channel.close()
        raise TrustError(f"ACS at {target} refused: " + "; ".join(problems))
    return TrustedAcs(target, server_name, cert_pem, bundle, channel)


def provision(
    acs: TrustedAcs, platform: TeePlatform, service: str, instance: str, node: str
) -> InstanceIdentity:
    """Attests this enclave for `service` and opens what the ACS sealed to it."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    stub = provisioning_pb2_grpc.ProvisioningStub(acs.channel)

    def attempt() -> tuple[bytes, provisioning_pb2.AttestResponse]:
        nonce = stub.GetNonce(provisioning_pb2.GetNonceRequest(service=service), timeout=10).nonce
        request = provisioning_pb2.AttestRequest(
            service=service,
            quote=platform.quote(binding(spki, nonce)),
            instance_public_key=spki,
            nonce=nonce,
            instance_name=instance,
            node=node,
        )
        return nonce, stub.Attest(request, timeout=30)

    nonce, response = with_retries(attempt)
    sealed = response.sealed
    payload = envelope.open_with(
        key,
        sealed.ephemeral_public_key,
        sealed.iv,
        sealed.ciphertext,
        attest_context(service, nonce),
    )
    secrets = types_pb2.ProvisionedSecrets.FromString(payload)
    return InstanceIdentity(
        service_chain_pem=response.identity.certificate_chain_pem.encode(),
        service_key_pem=secrets.identity_private_key_pem,
        instance_cert_pem=response.instance_certificate_pem.encode(),
        instance_key_pem=key_pem(key),
        ca_pem=response.trust_bundle.ca_certificate_pem.encode(),
        crl_pem=response.trust_bundle.crl_pem.encode(),
        secrets={s.name: s.value for s in secrets.secrets},
        config=response.config,
        generation=response.identity.generation,
        measurement=response.measurement,
    )
