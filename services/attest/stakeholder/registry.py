"""Policy versions in the ACS store: first-come names, signed next-version updates.

Store layout (every version kept). Every value is sealed (AES-GCM under the
platform sealing key, bound to its store key), so the host, which can write
the database file, cannot forge or move a policy, an owner or a key; like the
rest of the ACS state, a rollback of the whole file is not detected here.
  policy/<name>/head           current version number
  policy/<name>/v/<version>    PolicyRecord JSON
  stakeholder/<stakeholder>    DER key that owns every name under this prefix
  volkey/<name>:<path>         32-byte AES key of an own volume
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from services.attest.errors import (
    AlreadyExistsError,
    FailedPreconditionError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from services.attest.sealing import Sealer
from services.attest.stakeholder import references, signature
from services.attest.stakeholder.document import PolicyDocument, canonical, parse
from services.attest.store.base import Txn

MAX_VERSIONS = 10_000
NONCE_SCOPE_PREFIX = "policy/"


@dataclass(frozen=True)
class PolicyRecord:
    name: str
    version: int
    document: bytes
    signature: bytes
    digest: bytes
    owner_der: bytes
    accepted_at: float

    def parsed(self) -> PolicyDocument:
        return parse(self.document)


def _encode(record: PolicyRecord) -> bytes:
    body = {
        "name": record.name,
        "version": record.version,
        "document": record.document.hex(),
        "signature": record.signature.hex(),
        "digest": record.digest.hex(),
        "owner": record.owner_der.hex(),
        "accepted_at": record.accepted_at,
    }
    return json.dumps(body, sort_keys=True).encode()


def _decode(raw: bytes) -> PolicyRecord:
    body = json.loads(raw)
    return PolicyRecord(
        body["name"],
        int(body["version"]),
        bytes.fromhex(body["document"]),
        bytes.fromhex(body["signature"]),
        bytes.fromhex(body["digest"]),
        bytes.fromhex(body["owner"]),
        float(body["accepted_at"]),
    )


def volume_key_id(policy: str, path: str) -> str:
    return f"{policy}:{path}"


class PolicyTxn:
    """Typed access to policies inside one store transaction."""

    def __init__(self, txn: Txn, sealer: Sealer) -> None:
        self._txn = txn
        self._sealer = sealer
        self._parsed: dict[str, PolicyDocument | None] = {}

    def _get(self, key: str) -> bytes | None:
        sealed = self._txn.get(key)
        return None if sealed is None else self._sealer.unseal(key, sealed)

    def _put(self, key: str, value: bytes) -> None:
        self._txn.put(key, self._sealer.seal(key, value))

    def head(self, name: str) -> int:
        raw = self._get(f"policy/{name}/head")
        return 0 if raw is None else int(raw)

    def record(self, name: str, version: int = 0) -> PolicyRecord:
        version = version or self.head(name)
        raw = self._get(f"policy/{name}/v/{version:012d}") if version else None
        if raw is None:
            detail = f" version {version}" if version else ""
            raise NotFoundError(f"policy {name[:130]!r}{detail} does not exist")
        return _decode(raw)

    def history(self, name: str) -> list[PolicyRecord]:
        records = [
            _decode(self._sealer.unseal(k, v)) for k, v in self._txn.scan(f"policy/{name}/v/")
        ]
        if not records:
            raise NotFoundError(f"policy {name[:130]!r} does not exist")
        return records

    def latest(self, name: str) -> PolicyDocument | None:
        """The current document of `name`, or None (a reference lookup)."""
        if name not in self._parsed:
            self._parsed[name] = self.record(name).parsed() if self.head(name) else None
        return self._parsed[name]

    def volume_key(self, policy: str, path: str) -> bytes:
        key_id = volume_key_id(policy, path)
        key = self._get(f"volkey/{key_id}")
        if key is None:
            raise NotFoundError(f"no key for volume {key_id}")
        return key

    def put(self, record: PolicyRecord, document: PolicyDocument) -> None:
        self._put(f"policy/{record.name}/v/{record.version:012d}", _encode(record))
        self._put(f"policy/{record.name}/head", str(record.version).encode())
        self._put(f"stakeholder/{document.stakeholder}", document.stakeholder_der)
        self._parsed[record.name] = document
        for volume in document.volumes:
            key_id = volume_key_id(record.name, volume.path)
            if volume.own and self._txn.get(f"volkey/{key_id}") is None:
                # Generated here, inside the ACS; it leaves only sealed to an attested workload.
                self._put(f"volkey/{key_id}", os.urandom(32))

    def stakeholder_owner(self, stakeholder: str) -> bytes | None:
        return self._get(f"stakeholder/{stakeholder}")


def accept_new(
    policies: PolicyTxn, raw: bytes, sig: bytes, now: float
) -> tuple[PolicyRecord, PolicyDocument]:
    """First version of a name: signed by the key inside it, name and prefix unclaimed."""
    document = parse(raw)
    body = canonical(document)
    _require_signed(sig)
    if not signature.verifies(document.stakeholder_der, sig, body):
        raise UnauthenticatedError(
            "signature does not verify with the stakeholder key in the document; "
            "sign the policy with `s3mlctl policy sign`"
        )
    if document.version != 1:
        raise FailedPreconditionError(
            f"a new policy starts at version 1, not {document.version}; "
            "use UpdatePolicy (`s3mlctl policy update`) for later versions"
        )
    if policies.head(document.name):
        raise AlreadyExistsError(f"policy {document.name!r} already exists and belongs to its key")
    owner = policies.stakeholder_owner(document.stakeholder)
    if owner is not None and not hmac.compare_digest(owner, document.stakeholder_der):
        raise AlreadyExistsError(
            f"stakeholder name {document.stakeholder!r} belongs to another key; choose another"
        )
    _check_references(document, policies)
    return _record(document, raw, sig, body, now), document


def accept_update(
    policies: PolicyTxn, raw: bytes, sig: bytes, now: float
) -> tuple[PolicyRecord, PolicyDocument]:
    """Next version: signed by the current version's key, exactly current + 1."""
    document = parse(raw)
    body = canonical(document)
    signature.load_public(document.stakeholder_der)
    _require_signed(sig)
    current = policies.record(document.name)
    if not signature.verifies(current.owner_der, sig, body):
        raise PermissionDeniedError(
            f"an update of {document.name!r} must be signed by the key of version "
            f"{current.version}; this signature is by another key"
        )
    if document.version != current.version + 1:
        raise FailedPreconditionError(
            f"{document.name!r} is at version {current.version}; an update must carry "
            f"version {current.version + 1}, not {document.version} (no rollback, no replay)"
        )
    if document.version > MAX_VERSIONS:
        raise FailedPreconditionError(f"a policy has at most {MAX_VERSIONS} versions")
    _check_references(document, policies)
    return _record(document, raw, sig, body, now), document


def _require_signed(sig: bytes) -> None:
    if not sig:
        raise UnauthenticatedError("the policy is unsigned; sign it with `s3mlctl policy sign`")


def _check_references(document: PolicyDocument, policies: PolicyTxn) -> None:
    references.check_grants(document, policies.latest)
    references.check_acyclic(document, policies.latest)


def _record(
    document: PolicyDocument, raw: bytes, sig: bytes, body: bytes, now: float
) -> PolicyRecord:
    return PolicyRecord(
        name=document.name,
        version=document.version,
        document=raw,
        signature=sig,
        digest=hashlib.sha256(body).digest(),
        owner_der=document.stakeholder_der,
        accepted_at=now,
    )
