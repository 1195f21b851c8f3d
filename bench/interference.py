"""Table 3 mechanics: calibrate TH in the running cluster, then one model x policy run.

The paper's 10-minute run with stress-SGX during minutes 2-4 and 6-8 is
compressed to `seconds` with the windows at the same fractions (20-40 %, 60-80 %).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

import numpy as np

from bench.cluster_harness import BenchCluster, replica_port
from bench.timeline import OpenLoop, Sample, one_request
from inference import grpc_predict_v2_pb2 as pb
from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller.balancing import Hysteresis
from services.scaler.controller.controller import Controller, ControllerConfig
from services.scaler.controller.prometheus import PrometheusSource, paging_query
from services.scaler.controller.state import Decision, ModelSlo
from services.scaler.epc.pool import EpcPool
from services.scaler.profile import Step
from services.scaler.profiler.threshold import derive_threshold, step

STRESS_WINDOWS = ((0.2, 0.4), (0.6, 0.8))  # fractions of the run (paper: minutes 2-4, 6-8 of 10)
POLICIES = ("roundrobin", "leastconn", "s3ml")


@dataclass(frozen=True)
class Stress:
    node: int
    mib: int
    rate_mib_s: float


@dataclass(frozen=True)
class ControlSettings:
    """Algorithm 1's loop, its time constants compressed with the timeline (~8x)."""

    interval_s: float = 0.5
    window: str = "2s"  # 4 scrapes at cluster_harness.SCRAPE_INTERVAL
    intervals_over_threshold: int = 2  # N
    recover_intervals: int = 3  # M


@dataclass(frozen=True)
class Calibration:
    threshold_mb_per_s: float
    # "slo": where p99 crosses the SLO; "2x": where p99 doubles over the quiet step (the SLO
    # is never crossed); "max": neither, TH is the highest paging measured (the profiler's rule)
    rule: str
    steps: tuple[Step, ...]


@dataclass
class Run:
    model: str
    policy: str
    seconds: float
    samples: list[Sample]
    paging: list[tuple[float, float]] = field(default_factory=list)  # (t, MB/s) of the node
    decisions: list[Decision] = field(default_factory=list)
    t0: float = 0.0

    @property
    def p99_ms(self) -> float:
        return float(np.percentile([s.latency_s for s in self.samples], 99)) * 1e3

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if not s.ok)


def _node_paging_mb_s(cluster: BenchCluster, node: int, seconds: float) -> float:
    """Paging (in + out) on the node's pool over `seconds`, read from the pool's own counters."""
    pool = EpcPool(cluster.pool(node), f"node-{node}")
    try:
        a = pool.snapshot()
        time.sleep(seconds)
        b = pool.snapshot()
    finally:
        pool.close()
    pages = (b.paged_in or 0) - (a.paged_in or 0) + (b.paged_out or 0) - (a.paged_out or 0)
    return pages * 4096 / 1e6 / seconds


def _measure_step(
    cluster: BenchCluster, req: pb.ModelInferRequest, node: int, seconds: float
) -> tuple[float, list[float]]:
    """Sequential requests (a fresh connection each) straight to the node's replica."""
    target = cluster.target(f"127.0.0.1:{replica_port(node)}")
    latencies: list[float] = []
    paging: list[float] = []
    watcher = threading.Thread(
        target=lambda: paging.append(_node_paging_mb_s(cluster, node, seconds))
    )
    watcher.start()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        start = time.perf_counter()
        one_request(target, req)
        latencies.append((time.perf_counter() - start) * 1e3)
    watcher.join()
    return paging[0], latencies


def calibrate(
    cluster: BenchCluster,
    req: pb.ModelInferRequest,
    slo_ms: float,
    stress: Stress,
    step_s: float,
) -> Calibration:
    """TH from steps of stressor rate (0, R/4, R/2, R) on the node, the profiler's arithmetic.

    The client is one sequential client with a fresh connection per request: the
    share of the bench load one replica gets under round robin.
    """
    _measure_step(cluster, req, stress.node, 2.0)  # warm-up: first inferences, page-ins
    steps = []
    for fraction in (0.0, 0.25, 0.5, 1.0):
        proc = None
        if fraction > 0:
            proc = cluster.start_stressor(stress.node, stress.mib, stress.rate_mib_s * fraction)
        try:
            time.sleep(1.5)  # the stressor's cyclic touching evicts the replica's pages
            paging, latencies = _measure_step(cluster, req, stress.node, step_s)
        finally:
            if proc is not None:
                cluster.stop(proc)
        steps.append(step(paging, latencies))
    th, violated = derive_threshold(steps, slo_ms)
    if violated:
        return Calibration(max(th, 0.1), "slo", tuple(steps))
    # Within the SLO alone, but a replica whose p99 doubles is degraded: act where it doubles.
    th, doubled = derive_threshold(steps, 2 * steps[0].p99_ms)
    return Calibration(max(th, 0.1), "2x" if doubled else "max", tuple(steps))


def offered_rate(
    cal: Calibration, replicas: int, quiet_utilization: float = 0.15, overload: float = 1.3
) -> float:
    """Total req/s of the open-loop load, from the calibration's p50 latencies.

    Aim: the stressed replica gets `overload` x what it can serve under full stress
    (so round robin builds a backlog there, as in the paper), but no replica may use
    more than `quiet_utilization` of a core when quiet: 3 replicas, HAProxy and the
    clients share 2 cores. The CPU cap wins for every model here.
    """
    quiet, stressed = cal.steps[0].p50_ms / 1e3, cal.steps[-1].p50_ms / 1e3
    return replicas * min(overload / stressed, quiet_utilization / quiet)


def _stress_schedule(
    cluster: BenchCluster, stress: Stress, t0: float, seconds: float, stop: threading.Event
) -> None:
    for begin, end in STRESS_WINDOWS:
        if stop.wait(max(0.0, t0 + begin * seconds - time.time())):
            return
        proc = cluster.start_stressor(stress.node, stress.mib, stress.rate_mib_s)
        try:
            stop.wait(max(0.0, t0 + end * seconds - time.time()))
        finally:
            cluster.stop(proc)


def paging_series(
    url: str, node: int, t0: float, seconds: float, window: str
) -> list[tuple[float, float]]:
    query = urllib.parse.urlencode({
        "query": paging_query(window), "start": f"{t0:.3f}", "end": f"{t0 + seconds:.3f}", "step": "1",
    })  # fmt: skip
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=10) as resp:  # noqa: S310
            doc = json.loads(resp.read())
    except (OSError, ValueError):
        return []
    for series in doc.get("data", {}).get("result", []):
        if series.get("metric", {}).get("node") == f"node-{node}":
            return [
                (float(t) - t0, float(v)) for t, v in series["values"] if math.isfinite(float(v))
            ]
    return []


def run_policy(
    cluster: BenchCluster,
    model: str,
    req: pb.ModelInferRequest,
    policy: str,
    stress: Stress,
    slo: ModelSlo,
    control: ControlSettings,
    seconds: float,
    rate: float,
) -> Run:
    balance = "leastconn" if policy == "leastconn" else "roundrobin"
    haproxy = cluster.start_haproxy(model, cluster.nodes, balance)
    controller = None
    stop = threading.Event()
    try:
        load = OpenLoop(cluster.target(), req, rate, seconds)
        if policy == "s3ml":
            controller = Controller(
                HaproxyBackend(RuntimeApi(cluster.haproxy_socket)),
                PrometheusSource(cluster.prometheus_url, control.window, stale_after_s=10),
                {model: slo},
                ControllerConfig(
                    hysteresis=Hysteresis(recover_intervals=control.recover_intervals),
                    interval_s=control.interval_s,
                    autoscale=False,
                ),
            )
            threading.Thread(target=controller.run, daemon=True).start()
        load.start()  # t0 is known from here on
        stresser = threading.Thread(
            target=_stress_schedule, args=(cluster, stress, load.t0, seconds, stop)
        )
        stresser.start()
        samples = load.join()
        stop.set()
        stresser.join()
    finally:
        stop.set()
        if controller is not None:
            controller.stop()
        cluster.stop(haproxy)
    run = Run(model, policy, seconds, samples, t0=load.t0)
    run.paging = paging_series(
        cluster.prometheus_url, stress.node, load.t0, seconds, control.window
    )
    if controller is not None:
        run.decisions = [d for d in controller.status(1000).decisions if d.action == "weight"]
    return run
