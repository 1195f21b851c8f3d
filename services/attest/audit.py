"""The hash-chained audit log of attestation decisions and secret releases.

Each entry's chain hash is HMAC-SHA256(k, previous hash ‖ canonical JSON of the
entry), where k is derived from the ACS enclave's sealing key: editing,
dropping or reordering any entry breaks every later hash, and the host, which
can rewrite the database file, cannot recompute the chain. Entries carry names
and measurements, never secret values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from services.attest.store.base import Store, Txn


class AuditChainError(Exception):
    """The stored log does not match its hash chain."""


@dataclass(frozen=True)
class AuditEvent:
    sequence: int
    time: float
    action: str
    subject: str
    mrenclave_hex: str = ""
    secret_names: tuple[str, ...] = ()
    detail: str = ""


def _canonical(event: AuditEvent) -> bytes:
    return json.dumps(asdict(event), sort_keys=True, separators=(",", ":")).encode()


def _chain(key: bytes, previous: bytes, record: bytes) -> bytes:
    return hmac.new(key, previous + record, hashlib.sha256).digest()


KEY_LABEL = "s3ml audit chain"  # the sealing-key derivation of the chain's HMAC key


@dataclass(frozen=True)
class Trail:
    """The ACS's one audit chain as a service writes to it: the chain's key and the clock
    that stamps each entry (the ACS and the stakeholder service append to the same chain)."""

    key: bytes = field(repr=False)
    now: Callable[[], float]

    def append(
        self,
        txn: Txn,
        action: str,
        subject: str,
        mrenclave_hex: str = "",
        secret_names: tuple[str, ...] = (),
        detail: str = "",
    ) -> AuditEvent:
        seq, head = txn.log_head()
        event = AuditEvent(
            seq + 1, self.now(), action, subject, mrenclave_hex, secret_names, detail[:500]
        )
        record = _canonical(event)
        stored = txn.append_log(record, _chain(self.key, head, record))
        if stored != event.sequence:
            raise AuditChainError(f"audit sequence {stored} != expected {event.sequence}")
        return event


def decode(record: bytes) -> AuditEvent:
    raw = json.loads(record)
    raw["secret_names"] = tuple(raw["secret_names"])
    return AuditEvent(**raw)


def _sequence_of(record: bytes) -> int:
    try:
        return decode(record).sequence
    except (ValueError, KeyError, TypeError):
        return -1


def read(store: Store, after: int = 0, limit: int = 100) -> list[tuple[AuditEvent, bytes]]:
    return [(decode(record), chain) for _, record, chain in store.read_log(after, limit)]


def verify_chain(store: Store, key: bytes, page: int = 1000) -> tuple[int, bytes]:
    """Recomputes the chain; returns (events, head hash) or raises AuditChainError."""
    head, count, after = b"", 0, 0
    while rows := store.read_log(after, page):
        for seq, record, stored_hash in rows:
            if seq != count + 1 or _sequence_of(record) != seq:
                raise AuditChainError(f"audit log sequence broken at entry {seq}")
            head = _chain(key, head, record)
            if not hmac.compare_digest(head, stored_hash):
                raise AuditChainError(f"audit log hash chain broken at entry {seq}")
            count, after = seq, seq
    return count, head
