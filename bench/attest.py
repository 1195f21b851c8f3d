"""Attestation throughput and latency of full attest-and-provision round trips.

Each round trip is what a replica does at start: fresh P-256 key, GetNonce,
quote (sim QE) binding key and nonce, Attest (verify quote and collateral,
appraise, issue an instance certificate, seal identity and secrets to the
instance key, audit with an fsync'd commit), open the envelope. The ACS runs
in this process on loopback; the replicas run in separate client processes,
as they would in a cluster (all on this machine's cores).
Run: bazel run //bench:attest -- [--seconds 10] [--processes 2] [--threads 4]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path

from services.attest import client
from services.attest.ca import utcnow
from services.attest.platform.sim import SimEnclave, SimPlatform
from services.attest.server import sim_signer
from tests.attest.acs_harness import MODEL_MRENCLAVE, SERVICE, pin_for, running_acs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def replica_process(
    target: str, sim_dir: str, seconds: float, threads: int, out: multiprocessing.Queue[list[float]]
) -> None:
    import threading  # noqa: PLC0415

    trusted = client.connect(target, pin_for(Path(sim_dir)), utcnow)
    platform = SimPlatform(Path(sim_dir), SimEnclave(MODEL_MRENCLAVE, sim_signer(Path(sim_dir))))
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop(i: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            client.provision(trusted, platform, SERVICE, f"p{i}-{n}", "node-1")
            with lock:
                latencies.append(time.perf_counter() - start)
            n += 1

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    trusted.close()
    out.put(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="concurrent replicas per process")
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")  # gRPC must not be forked
    with tempfile.TemporaryDirectory() as tmp, running_acs(Path(tmp)) as env:
        env.register()
        client.provision(env.trusted, env.model_platform(), SERVICE, "warmup", "node-0")
        queue: multiprocessing.Queue[list[float]] = ctx.Queue()
        procs = [
            ctx.Process(
                target=replica_process,
                args=(env.target, str(env.sim_dir), args.seconds, args.threads, queue),
            )
            for _ in range(args.processes)
        ]
        began = time.perf_counter()
        for proc in procs:
            proc.start()
        latencies = [x for _ in procs for x in queue.get(timeout=args.seconds + 120)]
        wall = time.perf_counter() - began
        for proc in procs:
            proc.join()
    rate = len(latencies) / args.seconds
    p50 = percentile(latencies, 0.50) * 1000
    p99 = percentile(latencies, 0.99) * 1000
    mean = statistics.fmean(latencies) * 1000
    concurrency = args.processes * args.threads
    print(f"platform: SIMULATED SGX (sim quotes, real crypto); {concurrency} concurrent replicas")
    print(
        f"attestations: {len(latencies)} in {args.seconds:.0f} s (wall incl. start-up {wall:.1f} s)"
    )
    print(f"throughput {rate:.1f} attest/s; latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"RESULT attest_per_s={rate:.1f} p50_ms={p50:.2f} p99_ms={p99:.2f} mean_ms={mean:.2f} "
        f"concurrency={concurrency} total={len(latencies)} platform=sim"
    )


if __name__ == "__main__":
    main()
