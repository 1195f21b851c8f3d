"""Is a workload what its policy demands? SGX quotes and TPM/IMA host verdicts.

high_assurance: a DCAP quote (sim or hardware, the ACS's own verifier) whose
REPORTDATA binds the workload key and the single-use nonce, from an enclave
the policy names. high_integrity: a verdict signed by the configured TPM/IMA
verifier key, passing, fresh, for a host the policy names, plus the workload's
code hash. Codes follow stakeholder.proto: unacceptable evidence is
PERMISSION_DENIED; a missing, stale or failed verdict is FAILED_PRECONDITION.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.message import DecodeError

from s3ml.policy.v1 import evidence_pb2
from services.attest.appraisal import AppraisalError, Policy, appraise
from services.attest.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    PermissionDeniedError,
)
from services.attest.quote.verify import VerifiedQuote
from services.attest.stakeholder.document import PolicyDocument

CLOCK_SKEW_SECONDS = 60.0


@dataclass(frozen=True)
class VerdictTrust:
    """The TPM/IMA verifier the ACS believes, and how old a verdict may be."""

    public_key: ec.EllipticCurvePublicKey | None
    max_age_seconds: float = 300.0


def check_enclave(
    verified: VerifiedQuote,
    document: PolicyDocument,
    workload_der: bytes,
    nonce: bytes,
    revoked: frozenset[bytes] = frozenset(),
) -> None:
    policy = Policy(mr_enclaves=frozenset(document.integrity.mrenclave))
    try:
        appraise(verified, policy, workload_der, nonce, revoked)
    except AppraisalError as err:
        raise PermissionDeniedError(f"workload refused by {document.name}: {err}") from err


def check_host(
    signed_verdict: bytes,
    code_hash: bytes,
    document: PolicyDocument,
    trust: VerdictTrust,
    now: float,
) -> evidence_pb2.Verdict:
    verdict = _fresh_passing(signed_verdict, trust, now)
    host = document.operating_system
    assert host is not None  # document.parse requires it for high_integrity
    if host.hosts and verdict.host not in host.hosts:
        raise PermissionDeniedError(
            f"the verdict is for host {verdict.host[:64]!r}, not one {document.name} names"
        )
    if host.ek_digests and not any(
        hmac.compare_digest(verdict.ek_digest, d) for d in host.ek_digests
    ):
        raise PermissionDeniedError(f"the verdict's TPM (EK) is not one {document.name} names")
    if host.runtime_policy_digest and not hmac.compare_digest(
        verdict.policy_digest, host.runtime_policy_digest
    ):
        raise PermissionDeniedError(
            f"the host was appraised against another runtime policy than {document.name} names"
        )
    if not hmac.compare_digest(code_hash, document.integrity.code_hash):
        raise PermissionDeniedError(
            f"the workload code hash does not match the integrity hash of {document.name}"
        )
    return verdict


def _fresh_passing(signed_verdict: bytes, trust: VerdictTrust, now: float) -> evidence_pb2.Verdict:
    if trust.public_key is None:
        raise FailedPreconditionError(
            "this ACS has no TPM/IMA verifier key configured (--verdict-key); "
            "high_integrity keys cannot be released"
        )
    if not signed_verdict:
        raise FailedPreconditionError(
            "high_integrity needs a fresh passing verdict from the TPM/IMA verifier"
        )
    try:
        signed = evidence_pb2.SignedVerdict.FromString(signed_verdict)
        trust.public_key.verify(signed.signature, signed.verdict, ec.ECDSA(hashes.SHA256()))
        verdict = evidence_pb2.Verdict.FromString(signed.verdict)
    except DecodeError as err:
        raise InvalidArgumentError("signed_verdict is not a SignedVerdict") from err
    except (InvalidSignature, ValueError) as err:
        raise PermissionDeniedError(
            "the verdict is not signed by the TPM/IMA verifier this ACS trusts"
        ) from err
    issued = verdict.issued_at.ToNanoseconds() / 1e9
    not_after = verdict.not_after.ToNanoseconds() / 1e9
    if not_after < now or issued < now - trust.max_age_seconds:
        raise FailedPreconditionError(
            f"the verdict is stale (older than {trust.max_age_seconds:.0f} s or expired); "
            "ask the verifier for a fresh one"
        )
    if issued > now + CLOCK_SKEW_SECONDS:
        raise FailedPreconditionError("the verdict is issued in the future; check the clocks")
    if not verdict.trusted:
        reason = verdict.findings[0].reason if verdict.findings else "unspecified"
        raise FailedPreconditionError(f"the host's latest verdict failed ({reason[:80]})")
    return verdict
