"""The simulated EPC of one node, shared by every sim enclave process on that node.

A memory-mapped file per node (`<state>/epc/<node>.pool`) holds a frame table
(owner enclave, enclave page, last-use stamp) for the usable EPC pages, an
enclave table and the node's paging counters; an fcntl lock (plus a thread lock:
fcntl locks do not exclude threads of one process) guards every change. An
enclave registers its working set and "touches" pages; pages not resident are
paged in, and when no frame is free pages are paged out: enclaves in turn
(round robin, like the isgx driver's reclaimer), each losing its least recently
used pages. The bookkeeping is done under the lock; the real cost
(`PageCrypto.swap`) is paid afterwards, outside it, by the faulting process.
Enclaves whose process is gone are reaped, so a crash does not leak EPC.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.scaler.epc import liveness
from services.scaler.epc.errors import EpcError, PoolFullError
from services.scaler.epc.paging import PageCrypto, PagingCost
from services.scaler.epc.snapshot import KINDS, PAGE_SIZE, Enclave, EpcSnapshot

log = logging.getLogger("epc.pool")

MIB = 1024 * 1024
DEFAULT_TOTAL_BYTES = 128 * MIB
DEFAULT_USABLE_BYTES = 93 * MIB + MIB // 2
DEFAULT_SLOTS = 64
_MAGIC = b"S3MLEPC1"
_HEADER = np.dtype(
    [
        ("magic", "S8"),
        ("total_pages", "<u4"),
        ("usable_pages", "<u4"),
        ("slots", "<u4"),
        ("evict_cursor", "<u4"),  # round robin over enclave slots
        ("clock", "<u8"),
        ("paged_in", "<u8"),
        ("paged_out", "<u8"),
        ("pad", "<u8", 2),
    ]
)
_SLOT = np.dtype(
    [
        ("pid", "<i4"),
        ("kind", "<u4"),  # 0: free slot, else 1 + index in KINDS
        ("start", "<u8"),  # process start time, guards against pid reuse
        ("pages", "<u8"),
        ("paged_in", "<u8"),
        ("paged_out", "<u8"),
        ("name", "S88"),
    ]
)


def pool_path(state_dir: Path, node: str) -> Path:
    return state_dir / "epc" / f"{node}.pool"


@dataclass(frozen=True)
class EnclaveHandle:
    """A registered sim enclave: its slot in the pool and working set in pages."""

    slot: int
    pages: int
    name: str


@dataclass(frozen=True)
class TouchResult:
    paged_in: int
    paged_out: int


class EpcPool:
    """One process's view of a node's shared sim EPC pool."""

    def __init__(
        self,
        path: Path,
        node: str,
        total_bytes: int | None = None,
        usable_bytes: int | None = None,
        slots: int = DEFAULT_SLOTS,
        cost: PagingCost | None = None,
    ) -> None:
        """Opens the node's pool, creating it with the given (or default) sizes if absent.

        An existing pool keeps its sizes: the first process on a node decides them.
        """
        explicit = usable_bytes is not None
        total_bytes = total_bytes or DEFAULT_TOTAL_BYTES
        usable_bytes = usable_bytes or DEFAULT_USABLE_BYTES
        if not 0 < usable_bytes <= total_bytes or usable_bytes % PAGE_SIZE:
            raise EpcError("usable EPC must be a positive multiple of 4 KiB, at most the total")
        self.node = node
        self.path = path
        self._thread_lock = threading.Lock()
        self._crypto = PageCrypto(cost or PagingCost())
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        with self._file_lock():
            if os.fstat(self._fd).st_size == 0:
                self._create(total_bytes // PAGE_SIZE, usable_bytes // PAGE_SIZE, slots)
            header = np.frombuffer(os.pread(self._fd, _HEADER.itemsize, 0), _HEADER)[0]
        if header["magic"] != _MAGIC:
            os.close(self._fd)
            raise EpcError(f"{path} is not an s3ml EPC pool file")
        usable, n_slots = int(header["usable_pages"]), int(header["slots"])
        if explicit and usable != usable_bytes // PAGE_SIZE:
            log.warning("pool %s exists with %d usable pages; using it as is", path, usable)
        size = _HEADER.itemsize + n_slots * _SLOT.itemsize + usable * 16
        self._map = mmap.mmap(self._fd, size)
        self._header = np.frombuffer(self._map, _HEADER, 1, 0)
        offset = _HEADER.itemsize
        self._slots = np.frombuffer(self._map, _SLOT, n_slots, offset)
        offset += n_slots * _SLOT.itemsize
        self._owner = np.frombuffer(self._map, np.int32, usable, offset)
        self._vpage = np.frombuffer(self._map, np.int32, usable, offset + usable * 4)
        self._stamp = np.frombuffer(self._map, np.uint64, usable, offset + usable * 8)
        self.usable_pages = usable
        self.total_pages = int(header["total_pages"])
        # slot -> (the node's paged_out count, the slot's frames) after a touch that
        # found every page resident: while no page has left the EPC since, they still are.
        self._resident: dict[int, tuple[int, np.ndarray[Any, Any]]] = {}

    def _create(self, total: int, usable: int, slots: int) -> None:
        header = np.zeros(1, _HEADER)
        header["magic"], header["total_pages"] = _MAGIC, total
        header["usable_pages"], header["slots"] = usable, slots
        body = np.zeros(slots, _SLOT).tobytes() + np.full(usable, -1, np.int32).tobytes()
        body += np.zeros(usable, np.int32).tobytes() + np.zeros(usable, np.uint64).tobytes()
        os.pwrite(self._fd, header.tobytes() + body, 0)

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        with self._thread_lock:
            fcntl.lockf(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        del self._header, self._slots, self._owner, self._vpage, self._stamp
        self._map.close()
        os.close(self._fd)

    def register(
        self, name: str, kind: str, working_set_bytes: int, pid: int | None = None
    ) -> EnclaveHandle:
        """Declares an enclave and its working set; pages load on the first touch."""
        if kind not in KINDS:
            raise EpcError(f"enclave kind must be one of {KINDS}, not {kind!r}")
        if working_set_bytes <= 0:
            raise EpcError("an enclave's working set must be positive")
        pid = os.getpid() if pid is None else pid
        pages = -(-working_set_bytes // PAGE_SIZE)
        with self._file_lock():
            self._reap()
            free = np.flatnonzero(self._slots["kind"] == 0)
            if free.size == 0:
                raise PoolFullError(f"node {self.node}: all {self._slots.size} enclave slots used")
            slot = int(free[0])
            self._slots[slot] = (pid, KINDS.index(kind) + 1, liveness.start_time(pid), pages,
                                 0, 0, name.encode()[:88])  # fmt: skip
        log.info("node %s: enclave %s (%s) registered, working set %d pages", self.node,
                 name, kind, pages)  # fmt: skip
        return EnclaveHandle(slot, pages, name)

    def unregister(self, handle: EnclaveHandle) -> None:
        with self._file_lock():
            self._free_slot(handle.slot)
            self._resident.pop(handle.slot, None)

    def touch(self, handle: EnclaveHandle, first: int = 0, count: int | None = None) -> TouchResult:
        """Accesses `count` pages from `first` (wrapping), paging as needed; pays the cost."""
        result = self.account(handle, first, count)
        self._crypto.swap(result.paged_out, result.paged_in)
        return result

    def account(
        self, handle: EnclaveHandle, first: int = 0, count: int | None = None
    ) -> TouchResult:
        """`touch` without paying: for an enclave that pays its paging itself (the native
        data plane, which does the same AES-GCM work and delay on its own thread)."""
        whole = count is None or count >= handle.pages
        wanted = np.arange(handle.pages, dtype=np.int64)
        if count is not None and not whole:
            wanted = np.arange(first, first + count, dtype=np.int64) % handle.pages
        with self._file_lock():
            if whole and self._still_resident(handle.slot):
                return TouchResult(0, 0)
            result = self._touch_locked(handle.slot, handle.pages, wanted)
            if whole and result.paged_in == 0:
                mine = np.flatnonzero(self._owner == handle.slot)
                self._resident[handle.slot] = (int(self._header["paged_out"][0]), mine)
            return result

    def _still_resident(self, slot: int) -> bool:
        """The fast path of a whole touch (~100 us of numpy for a 20 MiB working set
        otherwise, on every inference): a frame leaves an enclave only by eviction,
        which the node's paged_out count records, so an unchanged count means every
        page is where the last all-hit touch found it. Their LRU stamps move on."""
        known = self._resident.get(slot)
        if (
            known is None
            or known[0] != int(self._header["paged_out"][0])
            or self._slots[slot]["kind"] == 0
        ):
            return False
        self._header["clock"] += 1
        self._stamp[known[1]] = self._header["clock"][0]
        return True

    def _touch_locked(self, slot: int, pages: int, wanted: np.ndarray[Any, Any]) -> TouchResult:
        if self._slots[slot]["kind"] == 0:
            raise EpcError(f"enclave slot {slot} on node {self.node} was reaped or unregistered")
        self._header["clock"] += 1
        now = self._header["clock"][0]
        mine = np.flatnonzero(self._owner == slot)
        frame_of = np.full(pages, -1, np.int64)
        frame_of[self._vpage[mine]] = mine
        hits = frame_of[wanted]
        self._stamp[hits[hits >= 0]] = now
        missing = wanted[hits < 0]
        if missing.size == 0:
            return TouchResult(0, 0)
        free = np.flatnonzero(self._owner == -1)[: missing.size]
        need = missing.size - free.size
        victims = np.empty(0, np.int64)
        if need > 0:
            victims = self._victims(need, now)
            out = np.bincount(self._owner[victims], minlength=self._slots.size)
            self._slots["paged_out"] += out.astype(np.uint64)
        frames = np.concatenate([free, victims])
        placed = missing[missing.size - frames.size :]
        self._owner[frames], self._vpage[frames], self._stamp[frames] = slot, placed, now
        # Pages beyond what fits (working set larger than the EPC) thrash: in and out again.
        thrash = missing.size - frames.size
        paged_out = victims.size + thrash
        self._slots[slot]["paged_in"] += missing.size
        self._slots[slot]["paged_out"] += thrash
        self._header["paged_in"] += missing.size
        self._header["paged_out"] += paged_out
        return TouchResult(int(missing.size), int(paged_out))

    def _victims(self, need: int, now: np.uint64) -> np.ndarray[Any, Any]:
        """Up to `need` frames to evict: enclaves in turn, each its least recently used.

        Like the isgx driver, which takes enclaves round robin and evicts a batch
        from each, an enclave in active use is not spared: under pressure every
        enclave loses pages, so interference reaches the model servers. Pages of
        the current touch are never chosen.
        """
        candidates = np.flatnonzero((self._stamp != now) & (self._owner >= 0))
        owners = self._owner[candidates]
        room = np.bincount(owners, minlength=self._slots.size)
        share = np.zeros_like(room)
        active = np.flatnonzero(room)
        start = int(self._header["evict_cursor"][0]) % self._slots.size
        active = np.concatenate([active[active >= start], active[active < start]])
        remaining = need
        while remaining > 0:
            per = max(1, remaining // max(1, active.size))
            progressed = False
            for slot in active:
                take = min(int(room[slot] - share[slot]), per, remaining)
                if take > 0:
                    share[slot] += take
                    remaining -= take
                    progressed = True
                    self._header["evict_cursor"] = slot + 1
            if not progressed:
                break
        chosen = []
        for slot in np.flatnonzero(share):
            frames = candidates[owners == slot]
            k = int(share[slot])
            chosen.append(frames[np.argpartition(self._stamp[frames], k - 1)[:k]])
        return np.concatenate(chosen) if chosen else np.empty(0, np.int64)

    def _free_slot(self, slot: int) -> None:
        self._owner[self._owner == slot] = -1
        self._slots[slot] = np.zeros(1, _SLOT)[0]

    def _reap(self) -> int:
        """Frees the slots and frames of enclaves whose process is gone (EREMOVE)."""
        reaped = 0
        for slot in np.flatnonzero(self._slots["kind"] != 0):
            entry = self._slots[slot]
            if not liveness.alive(int(entry["pid"]), int(entry["start"])):
                log.info("node %s: reaping enclave %s of dead pid %d", self.node,
                         entry["name"].decode(errors="replace"), entry["pid"])  # fmt: skip
                self._free_slot(int(slot))
                reaped += 1
        return reaped

    def reap(self) -> int:
        with self._file_lock():
            return self._reap()

    def snapshot(self) -> EpcSnapshot:
        with self._file_lock():
            self._reap()
            owners = self._owner.copy()
            slots = self._slots.copy()
            paged_in, paged_out = (
                int(self._header["paged_in"][0]),
                int(self._header["paged_out"][0]),
            )
        resident = np.bincount(owners[owners >= 0], minlength=slots.size)
        enclaves = tuple(
            Enclave(
                name=slots[i]["name"].decode(errors="replace"),
                kind=KINDS[int(slots[i]["kind"]) - 1],
                pid=int(slots[i]["pid"]),
                working_set_bytes=int(slots[i]["pages"]) * PAGE_SIZE,
                resident_pages=int(resident[i]),
            )
            for i in np.flatnonzero(slots["kind"] != 0)
        )
        return EpcSnapshot(
            node=self.node,
            epc_bytes=self.usable_pages * PAGE_SIZE,
            pages_in_use=int(np.count_nonzero(owners >= 0)),
            paged_in=paged_in,
            paged_out=paged_out,
            enclaves=enclaves,
            simulated=True,
        )
