"""Appraisal: does a verified quote satisfy a service's policy, fresh and bound?"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from services.attest.quote.verify import VerifiedQuote


class AppraisalError(Exception):
    """The quote is genuine but the policy refuses it; the message says which rule."""


@dataclass(frozen=True)
class Signer:
    mr_signer: bytes
    isv_prod_id: int
    min_isv_svn: int


@dataclass(frozen=True)
class Policy:
    """Which enclaves may join a service. Empty `mr_enclaves` and `signers` admits none."""

    mr_enclaves: frozenset[bytes] = frozenset()
    signers: tuple[Signer, ...] = ()
    insecure_allow_debug: bool = False
    allowed_tcb_statuses: frozenset[str] = field(default_factory=lambda: frozenset({"UpToDate"}))


def binding(public_key_der: bytes, nonce: bytes) -> bytes:
    """REPORTDATA an instance must put in its quote: SHA-256(key ‖ nonce) ‖ 32 zero bytes."""
    return hashlib.sha256(public_key_der + nonce).digest() + bytes(32)


def appraise(
    verified: VerifiedQuote,
    policy: Policy,
    public_key_der: bytes,
    nonce: bytes,
    revoked: frozenset[bytes] = frozenset(),
) -> None:
    """Raises AppraisalError naming the first rule the quote breaks."""
    report = verified.report
    if not hmac.compare_digest(report.report_data, binding(public_key_der, nonce)):
        raise AppraisalError("REPORTDATA does not bind the presented public key and nonce")
    if report.debug and not policy.insecure_allow_debug:
        raise AppraisalError("DEBUG enclave refused: the policy does not allow debug enclaves")
    if verified.tcb_status not in policy.allowed_tcb_statuses:
        raise AppraisalError(f"TCB status {verified.tcb_status} is not allowed by the policy")
    if report.mr_enclave in revoked:
        raise AppraisalError(f"MRENCLAVE {report.mr_enclave.hex()} has been revoked")
    if report.mr_enclave in policy.mr_enclaves:
        return
    for signer in policy.signers:
        if hmac.compare_digest(signer.mr_signer, report.mr_signer) and (
            signer.isv_prod_id == report.isv_prod_id
        ):
            if report.isv_svn < signer.min_isv_svn:
                raise AppraisalError(
                    f"ISVSVN {report.isv_svn} is below the policy minimum {signer.min_isv_svn}"
                )
            return
    raise AppraisalError(
        f"MRENCLAVE {report.mr_enclave.hex()[:16]}… / MRSIGNER is not allowed by the policy"
    )
