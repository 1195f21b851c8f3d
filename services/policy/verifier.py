"""The TPM/IMA verifier's domain logic: enrolment, evidence appraisal, signed verdicts.

A host is enrolled once (EK chain to a manufacturer CA, AK bound to the EK by
credential activation). Each verification spends a nonce, checks the quote,
replays the IMA log into PCR 10 — only the entries new since the last
verification, continuing from the stored replay state — and appraises them.
Every outcome, passing or not, is a verdict signed by the verifier's key.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.timestamp_pb2 import Timestamp
from tpm2_pytss import TPM2B_PUBLIC

from s3ml.policy.v1 import evidence_pb2
from services.policy.ima import log, replay
from services.policy.ima.appraisal import Finding, appraise
from services.policy.ima.ascii import parse_ascii
from services.policy.runtime_policy import HostPolicy
from services.policy.tpm import verify as tpm

IMA_PCR = replay.IMA_PCR


class VerifierError(Exception):
    """A request the verifier cannot act on (unknown host, bad nonce...)."""


class NotEnrolledError(VerifierError):
    pass


@dataclass
class _Host:
    ek_digest: bytes
    ak_public: bytes
    replay: replay.ReplayState | None = None
    last_quote: tpm.QuoteInfo | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class _Pending:
    ek_digest: bytes
    ak_public: bytes
    expected: bytes


def _ek_digest(ek_public: bytes) -> bytes:
    return hashlib.sha256(ek_public).digest()


class Verifier:
    def __init__(
        self,
        manufacturer_cas: list[bytes],
        policies: dict[str, HostPolicy],
        signing_key: ec.EllipticCurvePrivateKey,
        validity_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._cas = manufacturer_cas
        self._policies = policies
        self._key = signing_key
        self._validity = validity_seconds
        self._clock = clock
        self._pending: dict[str, _Pending] = {}
        self._hosts: dict[str, _Host] = {}
        self._nonces: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    # -- enrolment -------------------------------------------------------------------------

    def begin_enrollment(
        self, host: str, ek_cert: bytes, ek_public: bytes, ak_public: bytes
    ) -> tuple[bytes, bytes]:
        cert = tpm.check_ek_chain(ek_cert, self._cas)
        cert_pem = cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if TPM2B_PUBLIC.unmarshal(ek_public)[0].to_pem() != cert_pem:
            raise tpm.TpmCheckError("ek.chain", "EK public area does not match the EK certificate")
        ak = TPM2B_PUBLIC.unmarshal(ak_public)[0]
        name = bytes(ak.get_name().marshal())
        blob, secret, expected = tpm.make_challenge(ek_public, name)
        with self._lock:
            self._pending[host] = _Pending(_ek_digest(ek_public), ak_public, expected)
        return blob, secret

    def complete_enrollment(self, host: str, activated: bytes) -> bytes:
        with self._lock:
            pending = self._pending.pop(host, None)
        if pending is None:
            raise NotEnrolledError(f"no enrolment in progress for host {host!r}")
        tpm.check_activation(pending.expected, activated)
        with self._lock:
            self._hosts[host] = _Host(pending.ek_digest, pending.ak_public)
        return pending.ek_digest

    # -- nonces ------------------------------------------------------------------------------

    def nonce(self, host: str) -> bytes:
        if host not in self._hosts:
            raise NotEnrolledError(f"host {host!r} is not enrolled")
        value = os.urandom(20)
        with self._lock:
            self._nonces[value] = (host, self._clock() + 60.0)
        return value

    def _spend(self, host: str, nonce: bytes) -> None:
        with self._lock:
            issued = self._nonces.pop(nonce, None)
        if issued is None or issued[0] != host or issued[1] < self._clock():
            raise tpm.TpmCheckError(
                "quote.nonce", "nonce unknown, reused or expired; request a new one"
            )

    # -- verification ------------------------------------------------------------------------

    def verify(
        self, nonce: bytes, evidence: evidence_pb2.HostEvidence, policy_name: str
    ) -> evidence_pb2.SignedVerdict:
        host = self._hosts.get(evidence.host)
        if host is None:
            raise NotEnrolledError(f"host {evidence.host!r} is not enrolled")
        policy = self._policies.get(policy_name)
        if policy is None:
            raise VerifierError(f"unknown runtime policy {policy_name!r}")
        with host.lock:
            finding, entries = self._appraise(host, nonce, evidence, policy)
        return self._sign(evidence, host, policy, finding, entries)

    def _appraise(
        self, host: _Host, nonce: bytes, evidence: evidence_pb2.HostEvidence, policy: HostPolicy
    ) -> tuple[Finding | None, int]:
        try:
            self._spend(evidence.host, nonce)
            pcrs = {(v.bank, v.index): v.value for v in evidence.pcr_values}
            info = tpm.verify_quote(
                host.ak_public, evidence.quote_attest, evidence.quote_signature, nonce, pcrs
            )
            tpm.check_monotonic(host.last_quote, info)
        except tpm.TpmCheckError as err:
            return Finding(err.reason, str(err), -1, ""), host.replay.entries if host.replay else 0
        for (bank, index), expected in policy.pcrs.items():
            if pcrs.get((bank, index)) != expected:
                return Finding(
                    "boot.pcr",
                    f"PCR {bank}:{index} is not the expected measured-boot value",
                    -1,
                    "",
                ), 0
        banks = sorted({bank for bank, index in pcrs if index == IMA_PCR})
        start = (
            host.replay
            if host.replay and evidence.ima_offset
            else replay.ReplayState.initial(banks)
        )
        if evidence.ima_offset != start.entries:
            return Finding(
                "ima.offset",
                f"log sent from entry {evidence.ima_offset}, expected {start.entries}",
                -1,
                "",
            ), start.entries
        try:
            if evidence.ima_log or not evidence.ima_log_ascii:
                entries = log.parse(evidence.ima_log, first_index=start.entries)
            else:
                entries = parse_ascii(evidence.ima_log_ascii, first_index=start.entries)
        except log.ImaLogError as err:
            return Finding("ima.log", str(err), err.entry, ""), start.entries
        state = replay.extend(start, entries)
        for bank in banks:
            if not hmac.compare_digest(state.pcrs[bank], pcrs[(bank, IMA_PCR)]):
                return Finding(
                    "ima.pcr10",
                    f"IMA log does not replay to the quoted PCR 10 ({bank}): "
                    "entries removed, added, reordered or edited",
                    -1,
                    "",
                ), start.entries
        finding = appraise(entries, policy.ima)
        if finding is None:
            host.replay, host.last_quote = state, info  # trusted only when everything passed
        return finding, state.entries

    def _sign(
        self,
        evidence: evidence_pb2.HostEvidence,
        host: _Host,
        policy: HostPolicy,
        finding: Finding | None,
        entries: int,
    ) -> evidence_pb2.SignedVerdict:
        now = self._clock()
        verdict = evidence_pb2.Verdict(
            host=evidence.host,
            ek_digest=host.ek_digest,
            trusted=finding is None,
            policy_digest=policy.digest,
            evidence_digest=hashlib.sha256(evidence.SerializeToString(deterministic=True)).digest(),
            issued_at=_ts(now),
            not_after=_ts(now + self._validity),
            ima_entries=entries,
        )
        if finding is not None:
            verdict.findings.add(
                reason=finding.reason,
                message=finding.message[:400],
                ima_entry=finding.entry,
                path=finding.path[:400],
            )
        body = verdict.SerializeToString(deterministic=True)
        return evidence_pb2.SignedVerdict(
            verdict=body, signature=self._key.sign(body, ec.ECDSA(hashes.SHA256()))
        )


def _ts(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def check_verdict(
    signed: evidence_pb2.SignedVerdict, verifier_key: ec.EllipticCurvePublicKey, now: float
) -> evidence_pb2.Verdict:
    """What a consumer (the ACS) does: signature, then freshness."""
    verifier_key.verify(signed.signature, signed.verdict, ec.ECDSA(hashes.SHA256()))
    verdict = evidence_pb2.Verdict.FromString(signed.verdict)
    if verdict.not_after.ToNanoseconds() / 1e9 < now:
        raise VerifierError("verdict expired; ask the verifier for a fresh one")
    return verdict
