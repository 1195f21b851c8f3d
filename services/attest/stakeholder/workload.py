"""Workload side of key release: attest, receive the volume keys sealed to a fresh key.

An enclave passes its platform (the quote binds the fresh key and the nonce);
a high_integrity workload passes its host's signed verdict and its code hash.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from cryptography.hazmat.primitives.asymmetric import ec

from s3ml.attest.v1 import (
    provisioning_pb2,
    provisioning_pb2_grpc,
    stakeholder_pb2,
    stakeholder_pb2_grpc,
)
from services.attest import envelope
from services.attest.appraisal import binding
from services.attest.platform.base import TeePlatform
from services.attest.stakeholder.registry import NONCE_SCOPE_PREFIX
from services.attest.stakeholder.service import HostEvidence, release_context
from services.attest.stakeholder.signature import public_der


@dataclass(frozen=True)
class VolumeKey:
    path: str
    volume_policy: str
    access: str
    key: bytes = field(repr=False)


def nonce(channel: grpc.Channel, policy: str) -> bytes:
    stub = provisioning_pb2_grpc.ProvisioningStub(channel)
    request = provisioning_pb2.GetNonceRequest(service=NONCE_SCOPE_PREFIX + policy)
    return stub.GetNonce(request, timeout=10).nonce


def release_keys(
    channel: grpc.Channel,
    policy: str,
    platform: TeePlatform | None = None,
    host: HostEvidence | None = None,
) -> dict[str, VolumeKey]:
    """The keys of `policy`'s volumes by mount path; grpc.RpcError when refused."""
    key = ec.generate_private_key(ec.SECP256R1())
    spki = public_der(key)
    fresh = nonce(channel, policy)
    request = stakeholder_pb2.ReleaseKeysRequest(
        policy=policy, nonce=fresh, workload_public_key=spki
    )
    if platform is not None:
        request.quote = platform.quote(binding(spki, fresh))
    elif host is not None:
        request.host.signed_verdict = host.signed_verdict
        request.host.code_hash = host.code_hash
    response = stakeholder_pb2_grpc.StakeholderPoliciesStub(channel).ReleaseKeys(
        request, timeout=30
    )
    sealed = response.sealed
    plaintext = envelope.open_with(
        key,
        sealed.ephemeral_public_key,
        sealed.iv,
        sealed.ciphertext,
        release_context(policy, fresh),
    )
    released = stakeholder_pb2.ReleasedKeys.FromString(plaintext)
    return {k.path: VolumeKey(k.path, k.volume_policy, k.access, k.key) for k in released.keys}
