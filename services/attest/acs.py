"""The attestation configuration service: pure domain logic, no gRPC.

An instance proves, with a quote binding its fresh key to a single-use nonce,
that it is an acceptable enclave of a service; it then receives the service's
one shared TLS identity and the secrets the service's policy releases, sealed
to its key. The first attestation creates the identity; concurrent first
attestations race on a compare-and-swap in the store, so exactly one exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from opentelemetry import trace

from s3ml.attest.v1 import types_pb2
from services.attest import audit, envelope, records
from services.attest.appraisal import AppraisalError, Policy, appraise
from services.attest.ca import CertificateAuthority, key_pem, load_key, pem
from services.attest.collateral_source import CollateralSource
from services.attest.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from services.attest.nonce import Nonce, NonceBook, NonceError
from services.attest.quote.errors import (
    CollateralError,
    QuoteChainError,
    QuoteFormatError,
    QuoteSignatureError,
)
from services.attest.quote.verify import QuoteVerifier, VerifiedQuote
from services.attest.records import ServiceRecord
from services.attest.sealing import Sealer
from services.attest.stakeholder.registry import NONCE_SCOPE_PREFIX, PolicyTxn
from services.attest.store.base import Store, Txn, put_if_absent

MAX_SECRETS = 64
BUNDLE_REFRESH_SECONDS = 3600.0  # CRLs are valid 7 days; re-sign long before
_tracer = trace.get_tracer("s3ml.acs")


@dataclass(frozen=True)
class Identity:
    generation: int
    cert: x509.Certificate
    key_pem: bytes


@dataclass(frozen=True)
class Provisioned:
    """What an accepted instance receives; the secrets only inside `sealed`."""

    identity_chain_pem: bytes
    generation: int
    not_after: datetime
    sealed: types_pb2.SealedEnvelope
    instance_cert_pem: bytes
    verified: VerifiedQuote
    config: bytes


@dataclass(frozen=True)
class TrustBundle:
    ca_pem: bytes
    crl_pem: bytes
    generation: int


class Acs:
    def __init__(
        self,
        store: Store,
        sealer: Sealer,
        verifier: QuoteVerifier,
        collateral: CollateralSource,
        nonces: NonceBook,
        clock: Callable[[], datetime],
        platform_label: str,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._verifier = verifier
        self._collateral = collateral
        self._nonces = nonces
        self.nonces = nonces  # shared with the stakeholder domain (policy/<name> scopes)
        self._clock = clock
        self._trail = audit.Trail(
            sealer.derive_key(audit.KEY_LABEL), lambda: self._clock().timestamp()
        )
        # Decoded identities and the last CRL, reused while the stored bytes are unchanged.
        self._identities: dict[str, tuple[bytes, Identity]] = {}
        self._bundle: tuple[float, TrustBundle] | None = None
        self.ca = self._load_or_create_ca(platform_label)

    # -- certificate authority -------------------------------------------------

    def _load_or_create_ca(self, label: str) -> CertificateAuthority:
        fresh = CertificateAuthority.create(self._clock(), label)
        with self._store.transaction() as txn:
            cert_pem = put_if_absent(txn, "ca/cert", pem(fresh.cert))
            sealed = put_if_absent(txn, "ca/key", self._sealer.seal("ca/key", key_pem(fresh.key)))
        return CertificateAuthority(
            x509.load_pem_x509_certificate(cert_pem),
            load_key(self._sealer.unseal("ca/key", sealed)),
        )

    # -- services ---------------------------------------------------------------

    def register_service(
        self,
        name: str,
        dns_names: list[str],
        policy: Policy,
        generated_secrets: list[str],
        provided_secrets: dict[str, bytes],
        config: bytes,
    ) -> ServiceRecord:
        records.check_service_name(name)
        for dns in dns_names:
            records.check_dns_name(dns)
        records.check_policy(policy)
        names = [*generated_secrets, *provided_secrets]
        if len(set(names)) != len(names) or len(names) > MAX_SECRETS:
            raise InvalidArgumentError(f"secret names must be unique, at most {MAX_SECRETS}")
        for secret_name in names:
            records.check_secret_name(secret_name)
        values = {n: os.urandom(32) for n in generated_secrets} | provided_secrets
        record = ServiceRecord(name, tuple(dns_names), policy, tuple(sorted(names)), config, 1)
        with self._store.transaction() as txn:
            if txn.get(f"service/{name}") is not None:
                raise AlreadyExistsError(f"service {name!r} is already registered")
            txn.put(f"service/{name}", records.encode_service(record))
            for secret_name, value in values.items():
                key = f"secret/{name}/{secret_name}"
                txn.put(key, self._sealer.seal(key, value))
            self._trail.append(txn, "service.register", name, secret_names=tuple(sorted(names)))
        return record

    def update_service(
        self,
        name: str,
        expected_revision: int,
        policy: Policy | None,
        config: bytes | None,
        add_generated: list[str],
    ) -> ServiceRecord:
        if policy is not None:
            records.check_policy(policy)
        for secret_name in add_generated:
            records.check_secret_name(secret_name)
        with self._store.transaction() as txn:
            current = self._service_in(txn, name)
            if current.revision != expected_revision:
                raise FailedPreconditionError(
                    f"service {name!r} is at revision {current.revision}, not "
                    f"{expected_revision}; re-read it and retry"
                )
            clash = set(add_generated) & set(current.secret_names)
            if clash:
                raise AlreadyExistsError(f"secret {sorted(clash)[0]!r} already exists")
            updated = replace(
                current,
                policy=policy or current.policy,
                config=current.config if config is None else config,
                secret_names=tuple(sorted([*current.secret_names, *add_generated])),
                revision=current.revision + 1,
            )
            txn.put(f"service/{name}", records.encode_service(updated))
            for secret_name in add_generated:
                key = f"secret/{name}/{secret_name}"
                txn.put(key, self._sealer.seal(key, os.urandom(32)))
            self._trail.append(txn, "service.update", name, secret_names=tuple(add_generated))
        return updated

    def service(self, name: str) -> tuple[ServiceRecord, Identity | None]:
        with self._store.transaction() as txn:
            return self._service_in(txn, name), self._identity_in(txn, name)

    def services(self) -> list[ServiceRecord]:
        with self._store.transaction() as txn:
            return [records.decode_service(v) for _, v in txn.scan("service/")]

    def _service_in(self, txn: Txn, name: str) -> ServiceRecord:
        raw = txn.get(f"service/{name}")
        if raw is None:
            raise NotFoundError(f"service {name[:64]!r} is not registered")
        return records.decode_service(raw)

    # -- identities ---------------------------------------------------------------

    def _identity_in(self, txn: Txn, name: str) -> Identity | None:
        raw = txn.get(f"identity/{name}")
        return None if raw is None else self._decode_identity(name, raw)

    def _decode_identity(self, name: str, raw: bytes) -> Identity:
        cached = self._identities.get(name)
        if cached is not None and cached[0] == raw:
            return cached[1]
        identity = self._unseal_identity(name, raw)
        self._identities[name] = (raw, identity)
        return identity

    def _unseal_identity(self, name: str, raw: bytes) -> Identity:
        data = json.loads(raw)
        key = self._sealer.unseal(f"identity/{name}/key", bytes.fromhex(data["key"]))
        cert = x509.load_pem_x509_certificate(data["cert"].encode())
        return Identity(data["generation"], cert, key)

    def _new_identity(self, record: ServiceRecord, generation: int) -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.ca.issue_service(
            record.name, list(record.dns_names), key.public_key(), self._clock()
        )
        sealed = self._sealer.seal(f"identity/{record.name}/key", key_pem(key))
        body = {"generation": generation, "cert": pem(cert).decode(), "key": sealed.hex()}
        return json.dumps(body).encode()

    def _ensure_identity(self, record: ServiceRecord, existing: bytes | None) -> Identity:
        if existing is None:
            # Created outside the lock (key generation is the slow part); the
            # compare-and-swap keeps whichever candidate was stored first.
            candidate = self._new_identity(record, 1)
            with self._store.transaction() as txn:
                existing = put_if_absent(txn, f"identity/{record.name}", candidate)
                if existing is candidate:
                    self._trail.append(txn, "identity.create", record.name, detail="generation 1")
        return self._decode_identity(record.name, existing)

    def rotate_identity(self, name: str) -> Identity:
        with self._store.transaction() as txn:
            record = self._service_in(txn, name)
            old = self._identity_in(txn, name)
            generation = 1 if old is None else old.generation + 1
            raw = self._new_identity(record, generation)
            txn.put(f"identity/{name}", raw)
            if old is not None:
                self._revoke_serial(txn, old.cert.serial_number)
            self._trail.append(txn, "identity.rotate", name, detail=f"generation {generation}")
            return self._decode_identity(name, raw)

    # -- attestation --------------------------------------------------------------

    def issue_nonce(self, service: str) -> Nonce:
        """A nonce for a service's attestation, or for "policy/<name>" (key release)."""
        if service.startswith(NONCE_SCOPE_PREFIX):
            with self._store.transaction() as txn:
                PolicyTxn(txn, self._sealer).record(service.removeprefix(NONCE_SCOPE_PREFIX))
        else:
            self.service(service)
        try:
            return self._nonces.issue(service)
        except NonceError as err:
            raise FailedPreconditionError(str(err)) from err

    def attest(
        self,
        service: str,
        raw_quote: bytes,
        public_key_der: bytes,
        nonce: bytes,
        instance: str,
        node: str,
    ) -> Provisioned:
        attributes = {"s3ml.service": service[:64], "s3ml.node": node, "s3ml.instance": instance}
        with _tracer.start_as_current_span("acs.attest", attributes=attributes) as span:
            with self._store.transaction() as txn:  # one consistent read for the decision
                record = self._service_in(txn, service)
                identity_raw = txn.get(f"identity/{service}")
                revoked = frozenset(
                    bytes.fromhex(k.rsplit("/", 1)[1]) for k, _ in txn.scan("revoked/m/")
                )
            instance = records.instance_name(instance, public_key_der)
            try:
                verified, instance_key = self._check(
                    record, raw_quote, public_key_der, nonce, revoked
                )
            except (PermissionDeniedError, UnauthenticatedError, InvalidArgumentError) as err:
                span.set_attribute("s3ml.result", type(err).__name__)
                with self._store.transaction() as txn:
                    self._trail.append(
                        txn, "attest.reject", service, detail=f"{instance}@{node}: {err}"
                    )
                raise
            span.set_attribute("s3ml.mrenclave", verified.report.mr_enclave.hex())
            span.set_attribute("s3ml.tcb_status", verified.tcb_status)
            with _tracer.start_as_current_span("acs.provision"):
                provisioned = self._provision(
                    record, identity_raw, verified, instance_key, nonce, instance, node
                )
            span.set_attribute("s3ml.result", "accepted")
            span.set_attribute("s3ml.identity_generation", provisioned.generation)
            return provisioned

    def _provision(
        self,
        record: ServiceRecord,
        identity_raw: bytes | None,
        verified: VerifiedQuote,
        instance_key: ec.EllipticCurvePublicKey,
        nonce: bytes,
        instance: str,
        node: str,
    ) -> Provisioned:
        service = record.name
        identity = self._ensure_identity(record, identity_raw)
        now = self._clock()
        instance_cert = self.ca.issue_instance(service, instance, instance_key, now)
        payload = types_pb2.ProvisionedSecrets(identity_private_key_pem=identity.key_pem)
        mrenclave = verified.report.mr_enclave.hex()
        with self._store.transaction() as txn:
            for secret_name in record.secret_names:
                key = f"secret/{service}/{secret_name}"
                value = self._sealer.unseal(key, txn.get(key) or b"")
                payload.secrets.add(name=secret_name, value=value)
            txn.put(f"issued/{mrenclave}/{instance_cert.serial_number}", b"")
            self._trail.append(
                txn, "attest.accept", service, mrenclave, detail=f"{instance}@{node}"
            )
            self._trail.append(
                txn, "secret.release", service, mrenclave, record.secret_names, instance
            )
        context = attest_context(service, nonce)
        spki, iv, ciphertext = envelope.seal_to(instance_key, payload.SerializeToString(), context)
        return Provisioned(
            identity_chain_pem=pem(identity.cert) + pem(self.ca.cert),
            generation=identity.generation,
            not_after=identity.cert.not_valid_after_utc,
            sealed=types_pb2.SealedEnvelope(
                ephemeral_public_key=spki, iv=iv, ciphertext=ciphertext
            ),
            instance_cert_pem=pem(instance_cert),
            verified=verified,
            config=record.config,
        )

    def _check(
        self,
        record: ServiceRecord,
        raw_quote: bytes,
        public_key_der: bytes,
        nonce: bytes,
        revoked: frozenset[bytes],
    ) -> tuple[VerifiedQuote, ec.EllipticCurvePublicKey]:
        try:
            self._nonces.consume(nonce, record.name)
        except NonceError as err:
            raise PermissionDeniedError(str(err)) from err
        try:
            instance_key = envelope.load_instance_key(public_key_der)
        except ValueError as err:
            raise InvalidArgumentError(f"instance_public_key: {err}") from err
        with _tracer.start_as_current_span("acs.verify_quote"):
            verified = verify_quote(self._verifier, self._collateral, raw_quote, self._clock())
        try:
            with _tracer.start_as_current_span("acs.appraise"):
                appraise(verified, record.policy, public_key_der, nonce, revoked)
        except AppraisalError as err:
            raise PermissionDeniedError(str(err)) from err
        return verified, instance_key

    def check_quote(self, raw_quote: bytes) -> VerifiedQuote:
        """A genuine quote (not yet appraised against any policy), for other domains."""
        return verify_quote(self._verifier, self._collateral, raw_quote, self._clock())

    def issue_client_certificate(self, name: str, public_key_der: bytes) -> bytes:
        """A client certificate for inference callers; audited, never a secret."""
        try:
            key = envelope.load_instance_key(public_key_der)
        except ValueError as err:
            raise InvalidArgumentError(f"public_key: {err}") from err
        name = records.instance_name(name, public_key_der)
        cert = self.ca.issue_client(name, key, self._clock())
        with self._store.transaction() as txn:
            self._trail.append(txn, "client.issue", name, detail=f"serial {cert.serial_number:x}")
        return pem(cert)

    # -- revocation and trust -------------------------------------------------------

    def _revoke_serial(self, txn: Txn, serial: int) -> None:
        txn.put(f"revoked/s/{serial}", str(self._clock().timestamp()).encode())
        generation = int(txn.get("bundle/generation") or b"0") + 1
        txn.put("bundle/generation", str(generation).encode())

    def revoke_measurement(self, mrenclave: bytes, reason: str) -> int:
        if len(mrenclave) != 32:
            raise InvalidArgumentError(f"MRENCLAVE is 32 bytes, got {len(mrenclave)}")
        hex_value = mrenclave.hex()
        with self._store.transaction() as txn:
            txn.put(f"revoked/m/{hex_value}", reason.encode()[:500])
            serials = [int(k.rsplit("/", 1)[1]) for k, _ in txn.scan(f"issued/{hex_value}/")]
            fresh = [s for s in serials if txn.get(f"revoked/s/{s}") is None]
            for serial in fresh:
                self._revoke_serial(txn, serial)
            if not fresh:
                generation = int(txn.get("bundle/generation") or b"0") + 1
                txn.put("bundle/generation", str(generation).encode())
            self._trail.append(txn, "measurement.revoke", hex_value, hex_value, detail=reason)
        return len(fresh)

    def trust_bundle(self) -> TrustBundle:
        with self._store.transaction() as txn:
            generation = int(txn.get("bundle/generation") or b"0")
            cached = self._bundle
            if (
                cached is not None
                and cached[1].generation == generation
                and (time.monotonic() - cached[0] < BUNDLE_REFRESH_SECONDS)
            ):
                return cached[1]
            revoked = {
                int(k.rsplit("/", 1)[1]): datetime.fromtimestamp(float(v), self._clock().tzinfo)
                for k, v in txn.scan("revoked/s/")
            }
        bundle = TrustBundle(pem(self.ca.cert), self.ca.crl(revoked, self._clock()), generation)
        self._bundle = (time.monotonic(), bundle)
        return bundle

    # -- audit ---------------------------------------------------------------------

    def audit_events(
        self, subject: str, action_prefix: str, since: float, after: int, limit: int
    ) -> tuple[list[tuple[audit.AuditEvent, bytes]], int]:
        """Matching events (oldest first) and the sequence to continue after (0: done)."""
        limit = min(limit or 100, 1000)
        found: list[tuple[audit.AuditEvent, bytes]] = []
        cursor = after
        while len(found) < limit and (page := audit.read(self._store, cursor, 1000)):
            for event, chain in page:
                cursor = event.sequence
                if (
                    (not subject or event.subject == subject)
                    and event.action.startswith(action_prefix)
                    and event.time >= since
                ):
                    found.append((event, chain))
                    if len(found) == limit:
                        break
        more = bool(audit.read(self._store, cursor, 1)) if len(found) == limit else False
        return found, cursor if more else 0

    def verify_audit_chain(self) -> tuple[int, bytes]:
        return audit.verify_chain(self._store, self._trail.key)


def verify_quote(
    verifier: QuoteVerifier, collateral: CollateralSource, raw_quote: bytes, now: datetime
) -> VerifiedQuote:
    """Verifies a quote's signatures and chain; raises the ACS error for each failure."""
    try:
        return verifier.verify(raw_quote, collateral.collateral(now), now)
    except QuoteFormatError as err:
        raise InvalidArgumentError(f"quote: {err}") from err
    except (QuoteSignatureError, QuoteChainError) as err:
        raise UnauthenticatedError(f"quote: {err}") from err
    except CollateralError as err:
        raise FailedPreconditionError(f"collateral: {err}") from err
    except ValueError as err:  # a coordinate that is not on the curve
        raise UnauthenticatedError(f"quote: attestation key is invalid ({err})") from err


def attest_context(service: str, nonce: bytes) -> bytes:
    """Associated data binding a provisioning envelope to one attestation."""
    return hashlib.sha256(b"s3ml attest\0" + service.encode() + b"\0" + nonce).digest()
