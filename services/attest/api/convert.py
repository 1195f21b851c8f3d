"""Conversions between the s3ml.attest.v1 messages and domain values."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from s3ml.attest.v1 import types_pb2
from services.attest.appraisal import Policy, Signer
from services.attest.audit import AuditEvent
from services.attest.quote.verify import VerifiedQuote

DEFAULT_TCB = frozenset({"UpToDate"})


def policy_from_proto(msg: types_pb2.AppraisalPolicy) -> Policy:
    return Policy(
        mr_enclaves=frozenset(msg.mrenclave),
        signers=tuple(Signer(s.mrsigner, s.isv_prod_id, s.min_isv_svn) for s in msg.signers),
        insecure_allow_debug=msg.insecure_allow_debug,
        allowed_tcb_statuses=frozenset(msg.allowed_tcb_statuses) or DEFAULT_TCB,
    )


def policy_to_proto(policy: Policy) -> types_pb2.AppraisalPolicy:
    return types_pb2.AppraisalPolicy(
        mrenclave=sorted(policy.mr_enclaves),
        signers=[
            types_pb2.SignerIdentity(
                mrsigner=s.mr_signer, isv_prod_id=s.isv_prod_id, min_isv_svn=s.min_isv_svn
            )
            for s in policy.signers
        ],
        insecure_allow_debug=policy.insecure_allow_debug,
        allowed_tcb_statuses=sorted(policy.allowed_tcb_statuses),
    )


def measurement(verified: VerifiedQuote) -> types_pb2.EnclaveMeasurement:
    report = verified.report
    return types_pb2.EnclaveMeasurement(
        mrenclave=report.mr_enclave,
        mrsigner=report.mr_signer,
        isv_prod_id=report.isv_prod_id,
        isv_svn=report.isv_svn,
        debug=report.debug,
        tcb_status=verified.tcb_status,
    )


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def audit_event(event: AuditEvent, chain: bytes) -> types_pb2.AuditEvent:
    return types_pb2.AuditEvent(
        sequence=event.sequence,
        time=timestamp(event.time),
        action=event.action,
        subject=event.subject,
        mrenclave_hex=event.mrenclave_hex,
        secret_names=list(event.secret_names),
        detail=event.detail,
        chain_hash=chain,
    )
