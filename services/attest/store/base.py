"""The ACS store port: a small transactional key-value interface.

The embedded SQLite backend implements it; an etcd backend can implement the
same operations (etcd transactions give compare-and-swap and ordered keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol


class StoreError(Exception):
    """The store failed; state on disk is unchanged for the failed transaction."""


class Txn(Protocol):
    """Operations inside one atomic, isolated transaction."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def scan(self, prefix: str) -> Iterator[tuple[str, bytes]]: ...

    def append_log(self, record: bytes, chain_hash: bytes) -> int:
        """Appends to the audit log; returns the new sequence number."""
        ...

    def log_head(self) -> tuple[int, bytes]:
        """(sequence, chain hash) of the newest log entry; (0, b"") when empty."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractContextManager[Txn]:
        """Serialised read-write transaction; commits durably on normal exit."""
        ...

    def read_log(self, after: int, limit: int) -> list[tuple[int, bytes, bytes]]:
        """(sequence, record, chain hash) of log entries after `after`, oldest first."""
        ...

    def close(self) -> None: ...


def put_if_absent(txn: Txn, key: str, value: bytes) -> bytes:
    """Compare-and-swap from 'absent': the value that is stored after the call."""
    current = txn.get(key)
    if current is not None:
        return current
    txn.put(key, value)
    return value
