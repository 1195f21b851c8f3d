"""One profile run: a replica under increasing EPC interference, step by step.

The replica here is the enclave side of a sim model-server replica (the same
TFLite runtime pool and the same EPC working-set accounting as the model
server), driven in-process with one request at a time so the latency measured
is the replica's own, without client or network noise. Each step starts a real
stressor process at a touch rate; paging throughput is read from the node's
pool counters over the step, exactly the quantity the exporter publishes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.model_server.runtime import InterpreterPool
from services.scaler.epc.enclave_memory import SimEnclaveMemory, resident_bytes, working_set
from services.scaler.epc.paging import PagingCost
from services.scaler.epc.pool import EpcPool
from services.scaler.epc.snapshot import PAGE_SIZE
from services.scaler.profile import Profile, Step
from services.scaler.profiler.threshold import derive_threshold, step

log = logging.getLogger("profiler")


class Replica(Protocol):
    def infer(self) -> None: ...


class LocalReplica:
    """A model loaded as a sim model server loads it, registered in the node's pool."""

    def __init__(self, model_file: Path, pool: EpcPool, name: str) -> None:
        before = resident_bytes()
        model = model_file.read_bytes()
        self._runtime = InterpreterPool(model, size=1, threads=1)
        size = working_set(before, resident_bytes(), len(model))
        self.memory = SimEnclaveMemory.register(pool, name, size)
        self.working_set_bytes = size
        inputs, _ = self._runtime.details()
        rng = np.random.default_rng(0)
        self._inputs: list[np.ndarray[Any, Any]] = [
            rng.integers(0, 100, d["shape"]).astype(d["dtype"]) for d in inputs
        ]

    def infer(self) -> None:
        self.memory.touch()
        self._runtime.run(self._inputs, None)


@dataclass(frozen=True)
class Plan:
    model: str
    slo_p99_ms: float
    rates_mib_s: tuple[float, ...]
    requests: int
    stressor_mib: int
    warmup_s: float = 1.0
    # Paging is a rate: a step shorter than a few stressor ticks (20 ms) could fall
    # between two of them and read 0 MB/s, so a step lasts at least this long.
    min_step_s: float = 1.0


@contextmanager
def stressor_process(
    node: str, state_dir: Path, mib: int, cost: PagingCost, rate_mib_s: float
) -> Iterator[None]:
    """A real `epc-stressor` process for the duration of a step (none at rate 0)."""
    if rate_mib_s <= 0:
        yield
        return
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "services.scaler.stressor.main", "--node", node,
         "--state-dir", str(state_dir), "--mib", str(mib), "--rate-mib-s", str(rate_mib_s),
         "--extra-delay-us", str(cost.extra_delay_us)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("READY"):
            raise RuntimeError(f"stressor failed to start (exit code {proc.wait()})")
        yield
    finally:
        proc.terminate()
        proc.wait(30)


def measure(
    replica: Replica, pool: EpcPool, requests: int, min_seconds: float = 0.0
) -> tuple[float, list[float]]:
    """(paging MB/s over the step, per-request latencies in ms): `requests`, at least."""
    before = pool.snapshot()
    started = time.monotonic()
    latencies: list[float] = []
    while len(latencies) < requests or time.monotonic() - started < min_seconds:
        t0 = time.perf_counter()
        replica.infer()
        latencies.append((time.perf_counter() - t0) * 1000.0)
    elapsed = time.monotonic() - started
    after = pool.snapshot()
    pages = (after.paged_in or 0) - (before.paged_in or 0)
    pages += (after.paged_out or 0) - (before.paged_out or 0)
    return pages * PAGE_SIZE / 1e6 / elapsed, latencies


def run(
    plan: Plan,
    replica: Replica,
    pool: EpcPool,
    interference: Callable[[float], Any],
) -> Profile:
    """Measures every step of `plan` and derives TH; `interference(rate)` is a context."""
    steps: list[Step] = []
    for rate in plan.rates_mib_s:
        with interference(rate):
            deadline = time.monotonic() + plan.warmup_s
            while time.monotonic() < deadline:
                replica.infer()
            paging, latencies = measure(replica, pool, plan.requests, plan.min_step_s)
        steps.append(step(paging, latencies))
        log.info("stressor %.1f MiB/s: paging %.1f MB/s, p50 %.1f ms, p99 %.1f ms", rate,
                 paging, steps[-1].p50_ms, steps[-1].p99_ms)  # fmt: skip
    threshold, violated = derive_threshold(steps, plan.slo_p99_ms)
    if not violated:
        log.warning("p99 stayed within %.0f ms at every step; TH = highest paging measured "
                    "(%.1f MB/s); add higher rates to find the real TH", plan.slo_p99_ms,
                    threshold)  # fmt: skip
    return Profile(plan.model, plan.slo_p99_ms, threshold, tuple(steps), "sim")
