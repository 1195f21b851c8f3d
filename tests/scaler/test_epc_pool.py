"""The shared sim EPC pool across real processes: accounting, paging, reaping, stressor."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.scaler.epc import liveness
from services.scaler.epc.errors import EpcError
from services.scaler.epc.paging import PagingCost
from services.scaler.epc.pool import MIB, EpcPool, TouchResult
from services.scaler.stressor.stressor import StressPlan, run
from tests.scaler.procs import enclave_process

USABLE = 16 * MIB  # a small EPC keeps the tests fast; the model is size-independent


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[EpcPool]:
    view = EpcPool(tmp_path / "epc" / "node-1.pool", "node-1", 32 * MIB, USABLE,
                   cost=PagingCost(0.0))  # fmt: skip
    yield view
    view.close()


def test_enclaves_that_fit_share_the_pool_without_paging(pool: EpcPool) -> None:
    other = enclave_process(pool.path, "node-1", "replica-b", "model_server", 6 * MIB)
    try:
        mine = pool.register("replica-a", "model_server", 8 * MIB)
        assert pool.touch(mine).paged_in == 2048
        assert pool.touch(mine).paged_in == 0
        snap = pool.snapshot()
        assert snap.pages_in_use == 2048 + 1536
        assert snap.paged_out == 0
        assert {e.name: e.resident_pages for e in snap.enclaves} == {
            "replica-a": 2048, "replica-b": 1536,
        }  # fmt: skip
        assert snap.foreign_enclaves == 0
    finally:
        other.communicate("\n")


def test_contention_between_processes_pages_both_ways(pool: EpcPool) -> None:
    mine = pool.register("replica-a", "model_server", 10 * MIB)
    pool.touch(mine)
    before = pool.snapshot()
    assert (before.paged_in, before.paged_out) == (2560, 0)
    stress = enclave_process(pool.path, "node-1", "stress", "stressor", 10 * MIB)
    try:
        # 20 MiB wanted on a 16 MiB EPC: the stressor evicted 4 MiB of replica-a...
        after_stress = pool.snapshot()
        assert after_stress.pages_in_use == USABLE // 4096
        assert after_stress.paged_out == 1024
        # ...which replica-a pages back in on its next inference, evicting stressor pages.
        result = pool.touch(mine)
        assert (result.paged_in, result.paged_out) == (1024, 1024)
        snap = pool.snapshot()
        assert snap.paged_in == 2560 + 2560 + 1024
        assert snap.paged_out == 2048
        assert snap.foreign_enclaves == 1
    finally:
        stress.communicate("\n")


def test_a_resident_working_set_stays_a_hit_until_something_is_evicted(pool: EpcPool) -> None:
    """The fast path of a whole touch: other enclaves paging into free frames leave it a
    hit; the first eviction sends it back through the frame table, which pages in."""
    mine = pool.register("replica-a", "model_server", 6 * MIB)
    assert pool.touch(mine).paged_in == 1536
    other = enclave_process(pool.path, "node-1", "replica-b", "model_server", 6 * MIB)
    try:
        assert pool.touch(mine) == TouchResult(0, 0)
        stress = enclave_process(pool.path, "node-1", "stress", "stressor", 8 * MIB)
        try:  # 20 MiB wanted on 16: 1024 pages of ours or of replica-b's go
            evicted = 1536 - next(
                e.resident_pages for e in pool.snapshot().enclaves if e.name == "replica-a"
            )
            assert evicted > 0
            assert pool.touch(mine).paged_in == evicted
            assert pool.touch(mine).paged_in == 0
        finally:
            stress.communicate("\n")
    finally:
        other.communicate("\n")


def test_dead_enclave_is_reaped_and_its_pages_freed(pool: EpcPool) -> None:
    other = enclave_process(pool.path, "node-1", "crashy", "other", 12 * MIB)
    assert pool.snapshot().pages_in_use == 3072
    other.kill()
    other.wait()
    snap = pool.snapshot()
    assert snap.enclaves == ()
    assert snap.pages_in_use == 0
    mine = pool.register("replica-a", "model_server", 16 * MIB)
    assert pool.touch(mine).paged_out == 0  # the dead enclave's frames were free


def test_reused_pid_is_not_alive() -> None:
    assert liveness.alive(os.getpid(), liveness.start_time(os.getpid()))
    assert not liveness.alive(os.getpid(), liveness.start_time(os.getpid()) + 1)
    assert not liveness.alive(0, 0)


def test_working_set_larger_than_epc_thrashes(pool: EpcPool) -> None:
    big = pool.register("huge", "other", 20 * MIB)
    first = pool.touch(big)
    assert first.paged_in == 5120
    assert first.paged_out == 1024  # 4 MiB more than fits went in and out again
    assert pool.snapshot().pages_in_use == USABLE // 4096


def test_touching_an_unregistered_enclave_is_an_error(pool: EpcPool) -> None:
    handle = pool.register("gone", "other", MIB)
    pool.unregister(handle)
    with pytest.raises(EpcError, match="reaped or unregistered"):
        pool.touch(handle)


def test_bad_registrations_are_refused(pool: EpcPool) -> None:
    with pytest.raises(EpcError, match="kind must be one of"):
        pool.register("x", "gpu", MIB)
    with pytest.raises(EpcError, match="must be positive"):
        pool.register("x", "other", 0)


def test_stressor_pages_only_under_contention(pool: EpcPool) -> None:
    replica = pool.register("replica-a", "model_server", 8 * MIB)
    pool.touch(replica)
    calm = run(pool, StressPlan(4, 4096.0, 0.3), threading.Event())
    assert calm.touched > 1024
    assert calm.paged_out == 0
    assert pool.touch(replica).paged_in == 0
    # 8 + 12 MiB on 16 MiB, both active: each evicts what the other needs next.
    reports = []
    stress = threading.Thread(
        target=lambda: reports.append(run(pool, StressPlan(12, 8192.0, 0.5), threading.Event()))
    )
    stress.start()
    replica_in = 0
    while stress.is_alive():
        replica_in += pool.touch(replica).paged_in
    stress.join()
    assert replica_in > 0
    assert reports[0].paged_in > 3072
    assert reports[0].paged_out > 0
    assert [e.name for e in pool.snapshot().enclaves] == ["replica-a"]


def test_paging_cost_is_paid_for_real(tmp_path: Path) -> None:
    """With the calibrated delay, a full-EPC reload costs at least pages x delay."""
    import time  # noqa: PLC0415

    slow = EpcPool(tmp_path / "slow.pool", "n", 8 * MIB, 4 * MIB, cost=PagingCost(50.0))
    handle = slow.register("a", "other", 4 * MIB)
    started = time.perf_counter()
    result = slow.touch(handle)
    assert result.paged_in == 1024
    assert time.perf_counter() - started >= 1024 * 50e-6
    slow.close()
