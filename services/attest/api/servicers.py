"""Thin gRPC servicers of the ACS: decode, call the domain, encode.

Errors are mapped by status.ErrorMappingInterceptor; metrics and spans are
recorded here and in the domain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import grpc
from prometheus_client import Counter, Histogram

from s3ml.attest.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    provisioning_pb2,
    provisioning_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    trust_pb2,
    trust_pb2_grpc,
    types_pb2,
)
from s3ml.common.v1 import platform_pb2
from services.attest import errors
from services.attest.acs import Acs
from services.attest.api import convert
from services.attest.api.status import code_for
from services.attest.ca import pem
from services.attest.records import ServiceRecord

ATTESTATIONS = Counter(
    "s3ml_acs_attestations_total", "Attestation decisions of the ACS", ["service", "result"]
)
ATTEST_SECONDS = Histogram(
    "s3ml_acs_attestation_seconds",
    "Latency of a full attest-and-provision round in the ACS",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


@dataclass(frozen=True)
class SelfDescription:
    """What the ACS says about itself in Status and the trust bundle."""

    status: platform_pb2.ComponentStatus
    measurement: types_pb2.EnclaveMeasurement
    collateral_json: str
    started: float


class ProvisioningServicer(provisioning_pb2_grpc.ProvisioningServicer):
    def __init__(self, acs: Acs, me: SelfDescription) -> None:
        self._acs = acs
        self._me = me

    def GetNonce(
        self, request: provisioning_pb2.GetNonceRequest, context: grpc.ServicerContext
    ) -> provisioning_pb2.GetNonceResponse:
        nonce = self._acs.issue_nonce(request.service)
        return provisioning_pb2.GetNonceResponse(
            nonce=nonce.value, expires_at=convert.timestamp(nonce.expires_at)
        )

    def Attest(
        self, request: provisioning_pb2.AttestRequest, context: grpc.ServicerContext
    ) -> provisioning_pb2.AttestResponse:
        started = time.perf_counter()
        try:
            done = self._acs.attest(
                request.service,
                request.quote,
                request.instance_public_key,
                request.nonce,
                request.instance_name[:128],
                request.node[:128],
            )
        except Exception as err:
            code = code_for(err)
            ATTESTATIONS.labels(_label(request.service), code.name if code else "INTERNAL").inc()
            raise
        ATTESTATIONS.labels(_label(request.service), "OK").inc()
        bundle = self._acs.trust_bundle()
        response = provisioning_pb2.AttestResponse(
            identity=types_pb2.ServiceIdentity(
                certificate_chain_pem=done.identity_chain_pem.decode(),
                generation=done.generation,
                not_after=convert.timestamp(done.not_after.timestamp()),
            ),
            sealed=done.sealed,
            config=done.config,
            measurement=convert.measurement(done.verified),
            trust_bundle=_bundle(bundle.ca_pem, bundle.crl_pem, bundle.generation, self._me),
            instance_certificate_pem=done.instance_cert_pem.decode(),
        )
        ATTEST_SECONDS.observe(time.perf_counter() - started)
        return response

    def Status(
        self, request: platform_pb2.StatusRequest, context: grpc.ServicerContext
    ) -> platform_pb2.ComponentStatus:
        status = platform_pb2.ComponentStatus()
        status.CopyFrom(self._me.status)
        status.uptime_seconds = time.time() - self._me.started
        return status


def _label(service: str) -> str:
    """Bounded metric label: unknown names must not create unbounded series."""
    return service if len(service) <= 63 and service.replace("-", "").isalnum() else "invalid"


def _bundle(ca: bytes, crl: bytes, generation: int, me: SelfDescription) -> types_pb2.TrustBundle:
    return types_pb2.TrustBundle(
        ca_certificate_pem=ca.decode(),
        crl_pem=crl.decode(),
        acs_measurement=me.measurement,
        generation=generation,
        acs_collateral_json=me.collateral_json,
    )


class TrustServicer(trust_pb2_grpc.TrustServicer):
    def __init__(self, acs: Acs, me: SelfDescription) -> None:
        self._acs = acs
        self._me = me

    def GetTrustBundle(
        self, request: trust_pb2.GetTrustBundleRequest, context: grpc.ServicerContext
    ) -> types_pb2.TrustBundle:
        bundle = self._acs.trust_bundle()
        if request.known_generation and request.known_generation >= bundle.generation:
            return types_pb2.TrustBundle(generation=bundle.generation)
        return _bundle(bundle.ca_pem, bundle.crl_pem, bundle.generation, self._me)


def _service_info(acs: Acs, record: ServiceRecord) -> registry_pb2.ServiceInfo:
    _, identity = acs.service(record.name)
    return registry_pb2.ServiceInfo(
        name=record.name,
        dns_names=list(record.dns_names),
        policy=convert.policy_to_proto(record.policy),
        secret_names=list(record.secret_names),
        certificate_pem=pem(identity.cert).decode() if identity else "",
        identity_generation=identity.generation if identity else 0,
        revision=record.revision,
    )


class RegistryServicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, acs: Acs) -> None:
        self._acs = acs

    def RegisterService(
        self, request: registry_pb2.RegisterServiceRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ServiceInfo:
        if not request.HasField("policy"):
            raise errors.InvalidArgumentError("policy is required")
        record = self._acs.register_service(
            request.name,
            list(request.dns_names),
            convert.policy_from_proto(request.policy),
            list(request.generated_secrets),
            {s.name: s.value for s in request.provided_secrets},
            request.config,
        )
        return _service_info(self._acs, record)

    def UpdateService(
        self, request: registry_pb2.UpdateServiceRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ServiceInfo:
        record = self._acs.update_service(
            request.name,
            request.expected_revision,
            convert.policy_from_proto(request.policy) if request.HasField("policy") else None,
            request.config or None,
            list(request.add_generated_secrets),
        )
        return _service_info(self._acs, record)

    def GetService(
        self, request: registry_pb2.GetServiceRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ServiceInfo:
        record, _ = self._acs.service(request.name)
        return _service_info(self._acs, record)

    def ListServices(
        self, request: registry_pb2.ListServicesRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ListServicesResponse:
        infos = [_service_info(self._acs, r) for r in self._acs.services()]
        return registry_pb2.ListServicesResponse(services=infos)

    def RotateIdentity(
        self, request: registry_pb2.RotateIdentityRequest, context: grpc.ServicerContext
    ) -> registry_pb2.ServiceInfo:
        self._acs.rotate_identity(request.name)
        record, _ = self._acs.service(request.name)
        return _service_info(self._acs, record)

    def IssueClientCertificate(
        self, request: registry_pb2.IssueClientCertificateRequest, context: grpc.ServicerContext
    ) -> registry_pb2.IssueClientCertificateResponse:
        cert = self._acs.issue_client_certificate(request.name, request.public_key)
        return registry_pb2.IssueClientCertificateResponse(
            certificate_pem=cert.decode(), ca_certificate_pem=pem(self._acs.ca.cert).decode()
        )

    def RevokeMeasurement(
        self, request: registry_pb2.RevokeMeasurementRequest, context: grpc.ServicerContext
    ) -> registry_pb2.RevokeMeasurementResponse:
        count = self._acs.revoke_measurement(request.mrenclave, request.reason)
        return registry_pb2.RevokeMeasurementResponse(revoked_certificates=count)


class AuditServicer(audit_pb2_grpc.AuditServicer):
    def __init__(self, acs: Acs) -> None:
        self._acs = acs

    def QueryAudit(
        self, request: audit_pb2.QueryAuditRequest, context: grpc.ServicerContext
    ) -> audit_pb2.QueryAuditResponse:
        if request.limit > 1000:
            raise errors.InvalidArgumentError("limit is at most 1000")
        since = request.since.ToNanoseconds() / 1e9 if request.HasField("since") else 0.0
        events, cursor = self._acs.audit_events(
            request.subject, request.action_prefix, since, request.after_sequence, request.limit
        )
        return audit_pb2.QueryAuditResponse(
            events=[convert.audit_event(e, h) for e, h in events], next_after_sequence=cursor
        )

    def VerifyChain(
        self, request: audit_pb2.VerifyChainRequest, context: grpc.ServicerContext
    ) -> audit_pb2.VerifyChainResponse:
        count, head = self._acs.verify_audit_chain()
        return audit_pb2.VerifyChainResponse(events=count, head_hash=head)
