"""Stakeholders with real keys, policy documents, and a TPM/IMA verdict signer.

The verdict signer signs s3ml.policy.v1.Verdict exactly as the verifier
(services.policy.verifier) does: ECDSA P-256/SHA-256 over the deterministic
serialization. It stands in for the verifier process only so these tests do
not need swtpm; tests/policy covers the real verifier producing them.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from google.protobuf.timestamp_pb2 import Timestamp

from s3ml.attest.v1 import stakeholder_pb2, stakeholder_pb2_grpc
from s3ml.policy.v1 import evidence_pb2
from services.attest.stakeholder import signature
from services.attest.stakeholder.document import canonical, parse
from services.attest.stakeholder.workload import nonce

TRAINING_MRENCLAVE = hashlib.sha256(b"code owner: training enclave").digest()
SERVING_MRENCLAVE = hashlib.sha256(b"model owner: serving enclave").digest()
UPLOAD_MRENCLAVE = hashlib.sha256(b"data owner: upload enclave").digest()
GPU_CODE_HASH = hashlib.sha256(b"code owner: GPU training code").digest()
GPU_HOST = "gpu-node-1"


@dataclass
class Stakeholder:
    """A party with its own signing key (Ed25519 or ECDSA P-256)."""

    prefix: str
    key: signature.PrivateKey = field(default_factory=ed25519.Ed25519PrivateKey.generate)

    @classmethod
    def ecdsa(cls, prefix: str) -> Stakeholder:
        return cls(prefix, ec.generate_private_key(ec.SECP256R1()))

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def policy(self, asset: str, version: int = 1, **fields: Any) -> bytes:
        body: dict[str, Any] = {
            "name": f"{self.prefix}/{asset}",
            "version": version,
            "command": "python /app/main.py",
            "security_level": "high_assurance",
            "integrity": {"mrenclave": [UPLOAD_MRENCLAVE.hex()]},
            "volumes": [],
            "stakeholder": self.public_pem,
        }
        body.update(fields)
        return yaml.safe_dump(body, sort_keys=False).encode()

    def sign(self, document: bytes) -> bytes:
        return signature.sign(self.key, canonical(parse(document)))

    def signed(self, document: bytes) -> stakeholder_pb2.SubmitPolicyRequest:
        return stakeholder_pb2.SubmitPolicyRequest(document=document, signature=self.sign(document))

    def list_releases(
        self, channel: grpc.Channel, policy: str
    ) -> stakeholder_pb2.ListKeyReleasesResponse:
        fresh = nonce(channel, policy)
        sig = signature.sign(self.key, signature.list_releases_message(policy, fresh))
        request = stakeholder_pb2.ListKeyReleasesRequest(policy=policy, signature=sig, nonce=fresh)
        return policies(channel).ListKeyReleases(request, timeout=10)


def policies(channel: grpc.Channel) -> stakeholder_pb2_grpc.StakeholderPoliciesStub:
    return stakeholder_pb2_grpc.StakeholderPoliciesStub(channel)


def _ts(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


@dataclass
class VerdictSigner:
    """The TPM/IMA verifier's verdict-signing key (see the module docstring)."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def write_public(self, path: Path) -> Path:
        path.write_bytes(
            self.key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return path

    def verdict(
        self, host: str = GPU_HOST, trusted: bool = True, age: float = 0.0, validity: float = 120.0
    ) -> bytes:
        issued = time.time() - age
        verdict = evidence_pb2.Verdict(
            host=host,
            ek_digest=hashlib.sha256(host.encode()).digest(),
            trusted=trusted,
            policy_digest=hashlib.sha256(b"runtime policy").digest(),
            issued_at=_ts(issued),
            not_after=_ts(issued + validity),
        )
        if not trusted:
            verdict.findings.add(reason="ima.not_allowlisted", message="/usr/bin/evil", ima_entry=7)
        body = verdict.SerializeToString(deterministic=True)
        signed = evidence_pb2.SignedVerdict(
            verdict=body, signature=self.key.sign(body, ec.ECDSA(hashes.SHA256()))
        )
        return signed.SerializeToString()
