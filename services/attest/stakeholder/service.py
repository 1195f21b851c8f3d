"""Stakeholder policies and volume key release: the domain, no gRPC.

Keys never leave the ACS except sealed to the workload key that a quote (or,
for high_integrity, the request carrying a fresh passing host verdict) bound
to a single-use nonce. Every release and every refusal is in the audit log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry import trace

from s3ml.attest.v1 import stakeholder_pb2
from services.attest import audit, envelope
from services.attest.errors import (
    AcsError,
    FailedPreconditionError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from services.attest.nonce import NonceBook, NonceError
from services.attest.quote.verify import VerifiedQuote
from services.attest.sealing import Sealer
from services.attest.stakeholder import evidence, references, registry, signature
from services.attest.stakeholder.document import HIGH_ASSURANCE, PolicyDocument
from services.attest.stakeholder.registry import PolicyRecord, PolicyTxn, volume_key_id
from services.attest.store.base import Store

RELEASE = "key.release"
MAX_RELEASES_LISTED = 1000
QuoteCheck = Callable[[bytes], VerifiedQuote]
_tracer = trace.get_tracer("s3ml.acs")


@dataclass(frozen=True)
class ReleasedKey:
    path: str
    volume_policy: str
    access: str
    key: bytes = field(repr=False)


@dataclass(frozen=True)
class Release:
    keys: tuple[ReleasedKey, ...]
    sealed: tuple[bytes, bytes, bytes]  # ephemeral SPKI, iv, ciphertext


@dataclass(frozen=True)
class HostEvidence:
    signed_verdict: bytes
    code_hash: bytes


class Stakeholders:
    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        check_quote: QuoteCheck,
        nonces: NonceBook,
        verdicts: evidence.VerdictTrust,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._check_quote = check_quote
        self._nonces = nonces
        self._verdicts = verdicts
        self._clock = clock
        self._trail = audit.Trail(sealer.derive_key(audit.KEY_LABEL), clock)  # the ACS's one chain

    # -- policies -----------------------------------------------------------------

    def submit(self, raw: bytes, sig: bytes) -> PolicyRecord:
        return self._accept(raw, sig, registry.accept_new, "policy.submit")

    def update(self, raw: bytes, sig: bytes) -> PolicyRecord:
        return self._accept(raw, sig, registry.accept_update, "policy.update")

    def _accept(
        self,
        raw: bytes,
        sig: bytes,
        rule: Callable[[PolicyTxn, bytes, bytes, float], tuple[PolicyRecord, PolicyDocument]],
        action: str,
    ) -> PolicyRecord:
        with self._store.transaction() as txn:
            policies = PolicyTxn(txn, self._sealer)
            record, document = rule(policies, raw, sig, self._clock())
            policies.put(record, document)
            self._trail.append(txn, action, record.name, detail=f"version {record.version}")
        return record

    def get(self, name: str, version: int = 0) -> PolicyRecord:
        with self._store.transaction() as txn:
            return PolicyTxn(txn, self._sealer).record(name, version)

    def history(self, name: str) -> list[PolicyRecord]:
        with self._store.transaction() as txn:
            return PolicyTxn(txn, self._sealer).history(name)

    # -- key release --------------------------------------------------------------

    def release(
        self,
        policy: str,
        nonce: bytes,
        workload_der: bytes,
        quote: bytes | None,
        host: HostEvidence | None,
    ) -> Release:
        attributes = {"s3ml.policy": policy[:130]}
        with _tracer.start_as_current_span("acs.release_keys", attributes=attributes) as span:
            try:
                release = self._release(policy, nonce, workload_der, quote, host)
            except AcsError as err:
                span.set_attribute("s3ml.result", type(err).__name__)
                with self._store.transaction() as txn:
                    self._trail.append(txn, "key.reject", policy[:130], detail=str(err))
                raise
            span.set_attribute("s3ml.result", "released")
            span.set_attribute("s3ml.keys", len(release.keys))
            return release

    def _release(
        self,
        policy: str,
        nonce: bytes,
        workload_der: bytes,
        quote: bytes | None,
        host: HostEvidence | None,
    ) -> Release:
        document = self._document(policy)
        self._spend(nonce, policy)
        workload_key = _workload_key(workload_der)
        mrenclave, detail = self._appraise(document, nonce, workload_der, quote, host)
        with self._store.transaction() as txn:
            policies = PolicyTxn(txn, self._sealer)
            current = policies.latest(policy)
            if current != document:
                raise FailedPreconditionError(f"{policy} changed during the request; retry")
            keys = _keys(document, policies)
            names = tuple(volume_key_id(k.volume_policy, _source(document, k)) for k in keys)
            self._trail.append(txn, RELEASE, policy, mrenclave, names, detail)
        plaintext = stakeholder_pb2.ReleasedKeys(
            keys=[
                stakeholder_pb2.VolumeKey(
                    path=k.path, volume_policy=k.volume_policy, access=k.access, key=k.key
                )
                for k in keys
            ]
        ).SerializeToString()
        sealed = envelope.seal_to(workload_key, plaintext, release_context(policy, nonce))
        return Release(keys, sealed)

    def _revoked(self) -> frozenset[bytes]:
        """MRENCLAVEs the ACS administrator revoked: no keys for them either."""
        with self._store.transaction() as txn:
            return frozenset(bytes.fromhex(k.rsplit("/", 1)[1]) for k, _ in txn.scan("revoked/m/"))

    def _document(self, policy: str) -> PolicyDocument:
        with self._store.transaction() as txn:
            return PolicyTxn(txn, self._sealer).record(policy).parsed()

    def _spend(self, nonce: bytes, policy: str) -> None:
        try:
            self._nonces.consume(nonce, registry.NONCE_SCOPE_PREFIX + policy)
        except NonceError as err:
            raise PermissionDeniedError(str(err)) from err

    def _appraise(
        self,
        document: PolicyDocument,
        nonce: bytes,
        workload_der: bytes,
        quote: bytes | None,
        host: HostEvidence | None,
    ) -> tuple[str, str]:
        """(MRENCLAVE hex or "", audit detail) of acceptable evidence; raises otherwise."""
        if document.security_level == HIGH_ASSURANCE:
            if quote is None:
                raise PermissionDeniedError(
                    f"{document.name} is high_assurance: only an SGX quote is accepted"
                )
            verified = self._check_quote(quote)
            evidence.check_enclave(verified, document, workload_der, nonce, self._revoked())
            return verified.report.mr_enclave.hex(), f"{HIGH_ASSURANCE} enclave"
        verdict = evidence.check_host(
            b"" if host is None else host.signed_verdict,
            b"" if host is None else host.code_hash,
            document,
            self._verdicts,
            self._clock(),
        )
        return (
            "",
            f"high_integrity host {verdict.host[:64]} "
            f"code {document.integrity.code_hash.hex()[:16]}",
        )

    # -- release listing ------------------------------------------------------------

    def releases(
        self, policy: str, nonce: bytes, sig: bytes
    ) -> list[tuple[audit.AuditEvent, bytes]]:
        """Releases of `policy`'s volume keys (to it or to importers), oldest first."""
        owner = self.get(policy).owner_der
        self._spend(nonce, policy)
        if not signature.verifies(owner, sig, signature.list_releases_message(policy, nonce)):
            raise UnauthenticatedError(f"the request must be signed by the current key of {policy}")
        # The chained log itself, not a side index the host could edit unnoticed.
        prefix = f"{policy}:"
        found: list[tuple[audit.AuditEvent, bytes]] = []
        cursor = 0
        while page := audit.read(self._store, cursor, 1000):
            for event, chain in page:
                cursor = event.sequence
                if event.action == RELEASE and any(
                    n.startswith(prefix) for n in event.secret_names
                ):
                    found.append((event, chain))
        return found[-MAX_RELEASES_LISTED:]


def release_context(policy: str, nonce: bytes) -> bytes:
    """Associated data binding a key-release envelope to one request."""
    return hashlib.sha256(b"s3ml release\0" + policy.encode() + b"\0" + nonce).digest()


def _workload_key(der: bytes) -> ec.EllipticCurvePublicKey:
    try:
        return envelope.load_instance_key(der)
    except ValueError as err:
        raise InvalidArgumentError(f"workload_public_key: {err}") from err


def _keys(document: PolicyDocument, policies: PolicyTxn) -> tuple[ReleasedKey, ...]:
    """Exactly the keys of the volumes the policy may read or write, grants re-checked."""
    keys = []
    for volume in document.volumes:
        if volume.own:
            key = policies.volume_key(document.name, volume.path)
            keys.append(ReleasedKey(volume.path, document.name, "write", key))
        else:
            source = references.exported_volume(document.name, volume, policies.latest)
            key = policies.volume_key(volume.imports, source.path)
            keys.append(ReleasedKey(volume.path, volume.imports, "read", key))
    return tuple(keys)


def _source(document: PolicyDocument, key: ReleasedKey) -> str:
    """The path of a released key's volume in the policy that owns it."""
    for volume in document.volumes:
        if volume.path == key.path:
            return volume.source_path
    return key.path
