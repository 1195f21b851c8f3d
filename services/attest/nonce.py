"""Single-use, short-lived nonces: a quote is fresh only if it binds one of these."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class NonceError(Exception):
    """Unknown, reused or expired nonce."""


@dataclass(frozen=True)
class Nonce:
    value: bytes
    scope: str
    expires_at: float


class NonceBook:
    """In-memory nonce registry. Nonces do not survive a restart, by design:
    an attestation in flight during a restart simply asks for a new one."""

    def __init__(
        self,
        ttl_seconds: float = 60.0,
        capacity: int = 100_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ttl = ttl_seconds
        self._capacity = capacity
        self._clock = clock
        self._open: dict[bytes, Nonce] = {}
        self._lock = threading.Lock()

    def issue(self, scope: str) -> Nonce:
        nonce = Nonce(os.urandom(32), scope, self._clock() + self._ttl)
        with self._lock:
            if len(self._open) >= self._capacity:
                self._expire()
            if len(self._open) >= self._capacity:
                raise NonceError("too many outstanding nonces; retry shortly")
            self._open[nonce.value] = nonce
        return nonce

    def consume(self, value: bytes, scope: str) -> None:
        """Spends a nonce once; any second use, other scope or late use fails."""
        with self._lock:
            nonce = self._open.pop(value, None)
        if nonce is None:
            raise NonceError("nonce unknown or already used; request a new one")
        if nonce.scope != scope:
            raise NonceError("nonce was issued for another service")
        if nonce.expires_at < self._clock():
            raise NonceError("nonce expired; request a new one")

    def _expire(self) -> None:
        now = self._clock()
        for value in [v for v, n in self._open.items() if n.expires_at < now]:
            del self._open[value]
