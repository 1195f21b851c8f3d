"""Thin gRPC servicer of StakeholderPolicies: decode, call the domain, encode.

Served on the public RA-TLS port: a stakeholder's signature (policies,
release listings) or a workload's attestation (key release) is the
authentication, so no admin certificate is needed. Codes: see
stakeholder.proto; errors map through api.status like every ACS call.
"""

from __future__ import annotations

import grpc
from prometheus_client import Counter

from s3ml.attest.v1 import stakeholder_pb2, stakeholder_pb2_grpc, types_pb2
from services.attest.api import convert
from services.attest.api.status import code_for
from services.attest.stakeholder.registry import PolicyRecord
from services.attest.stakeholder.service import HostEvidence, Stakeholders

KEY_RELEASES = Counter(
    "s3ml_acs_key_releases_total", "Volume key release decisions of the ACS", ["result"]
)


def _version(record: PolicyRecord) -> stakeholder_pb2.PolicyVersion:
    return stakeholder_pb2.PolicyVersion(
        name=record.name,
        version=record.version,
        document=record.document,
        signature=record.signature,
        digest=record.digest,
        owner_public_key=record.owner_der,
        accepted_at=convert.timestamp(record.accepted_at),
    )


class StakeholderServicer(stakeholder_pb2_grpc.StakeholderPoliciesServicer):
    def __init__(self, stakeholders: Stakeholders) -> None:
        self._domain = stakeholders

    def SubmitPolicy(
        self, request: stakeholder_pb2.SubmitPolicyRequest, context: grpc.ServicerContext
    ) -> stakeholder_pb2.PolicyVersion:
        return _version(self._domain.submit(request.document, request.signature))

    def UpdatePolicy(
        self, request: stakeholder_pb2.SubmitPolicyRequest, context: grpc.ServicerContext
    ) -> stakeholder_pb2.PolicyVersion:
        return _version(self._domain.update(request.document, request.signature))

    def GetPolicy(
        self, request: stakeholder_pb2.GetPolicyRequest, context: grpc.ServicerContext
    ) -> stakeholder_pb2.PolicyVersion:
        return _version(self._domain.get(request.name, request.version))

    def PolicyHistory(
        self, request: stakeholder_pb2.PolicyHistoryRequest, context: grpc.ServicerContext
    ) -> stakeholder_pb2.PolicyHistoryResponse:
        records = self._domain.history(request.name)
        return stakeholder_pb2.PolicyHistoryResponse(versions=[_version(r) for r in records])

    def ReleaseKeys(
        self, request: stakeholder_pb2.ReleaseKeysRequest, context: grpc.ServicerContext
    ) -> stakeholder_pb2.ReleaseKeysResponse:
        kind = request.WhichOneof("evidence")
        host = (
            HostEvidence(request.host.signed_verdict, request.host.code_hash)
            if kind == "host"
            else None
        )
        try:
            release = self._domain.release(
                request.policy,
                request.nonce,
                request.workload_public_key,
                request.quote if kind == "quote" else None,
                host,
            )
        except Exception as err:
            code = code_for(err)
            KEY_RELEASES.labels(code.name if code else "INTERNAL").inc()
            raise
        KEY_RELEASES.labels("OK").inc()
        spki, iv, ciphertext = release.sealed
        return stakeholder_pb2.ReleaseKeysResponse(
            keys=[
                stakeholder_pb2.VolumeKey(
                    path=k.path, volume_policy=k.volume_policy, access=k.access
                )
                for k in release.keys
            ],
            sealed=types_pb2.SealedEnvelope(
                ephemeral_public_key=spki, iv=iv, ciphertext=ciphertext
            ),
        )

    def ListKeyReleases(
        self, request: stakeholder_pb2.ListKeyReleasesRequest, context: grpc.ServicerContext
    ) -> stakeholder_pb2.ListKeyReleasesResponse:
        events = self._domain.releases(request.policy, request.nonce, request.signature)
        return stakeholder_pb2.ListKeyReleasesResponse(
            releases=[convert.audit_event(e, h) for e, h in events]
        )
