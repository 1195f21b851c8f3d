"""The hook an enclave application uses so the sim EPC sees its memory use.

On hardware the EPC does this by itself (`NoEpc`). On the simulated platform a
model server registers one enclave with its node's pool and touches the whole
working set on every inference, since an inference reads every weight and
writes the interpreter arena.

Working set of a model server: the resident memory the process gained while
loading its models (decrypted model bytes, the interpreters' tensor arenas, and
runtime code pages first touched by `allocate_tensors`), never less than the
models' size. The Gramine manifest's `sgx.enclave_size` is only an upper bound
(the whole virtual range; untouched pages never occupy EPC), so it is not used.
"""

from __future__ import annotations

import logging
import os
from typing import Protocol

from services.scaler.epc.pool import EnclaveHandle, EpcPool, TouchResult

log = logging.getLogger("epc")


class EnclaveMemory(Protocol):
    def touch(self) -> None:
        """Called once per unit of work (an inference)."""

    def close(self) -> None:
        """The enclave is destroyed: its EPC is released."""


class NoEpc:
    """Hardware, or EPC simulation off: the real EPC does the accounting."""

    def touch(self) -> None:
        return None

    def close(self) -> None:
        return None


class SimEnclaveMemory:
    """A registered sim enclave whose whole working set each touch accesses."""

    def __init__(self, pool: EpcPool, handle: EnclaveHandle) -> None:
        self._pool, self._handle = pool, handle

    @classmethod
    def register(cls, pool: EpcPool, name: str, working_set_bytes: int) -> SimEnclaveMemory:
        memory = cls(pool, pool.register(name, "model_server", working_set_bytes))
        memory.touch()  # the enclave's pages are loaded at start (EADD)
        return memory

    def touch(self) -> None:
        self._pool.touch(self._handle)

    def account(self) -> TouchResult:
        """A touch whose paging the caller pays (the native data plane, in its inference)."""
        return self._pool.account(self._handle)

    def close(self) -> None:
        self._pool.unregister(self._handle)


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def working_set(rss_before: int, rss_after: int, model_bytes: int) -> int:
    """Memory gained while loading the models, at least the models themselves."""
    return max(rss_after - rss_before, model_bytes, 4096)
