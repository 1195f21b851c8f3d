"""Fig. 7 of S3ML: throughput with 1, 2 and 3 replicas behind HAProxy.

Replica i runs on emulated node i (its own sim EPC pool), all behind one HAProxy
TCP frontend (`balance roundrobin`, TLS through to the enclaves). Load:
`--clients` closed-loop client processes with one attested mTLS connection
each (a multiple of 1, 2 and 3, so round robin spreads connections evenly).
ALL replicas, clients, HAProxy share this machine's 2 physical cores: the
ideal here is ~2x at best, not the paper's 3x on three machines.
Run: bazel run //bench:scalability -- [--quick] [--models ...] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.cluster_harness import bench_cluster
from bench.load import request, throughput
from bench.zoo_input import model_input

DEFAULT_MODELS = ("mobilenet_v1_f32", "efficientnet_lite0_f32")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scalability", description=__doc__)
    p.add_argument("--models", nargs="*", default=list(DEFAULT_MODELS))
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per point")
    p.add_argument("--clients", type=int, default=6)
    p.add_argument("--max-replicas", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smoke: one model, 3 s per point")
    a = p.parse_args(argv)
    if a.quick:
        a.models, a.seconds = a.models[:1], 3.0
    return a


def main(argv: list[str]) -> int:
    args = parse(argv)
    print(
        f"scalability: SIMULATED SGX; 1..{args.max_replicas} replicas on as many emulated "
        f"nodes, ALL on 2 shared physical cores (ideal ~2x, not 3x); {args.clients} "
        f"closed-loop clients over attested mTLS via HAProxy; {args.seconds:g} s per point",
        flush=True,
    )
    figures: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="s3ml-scal-") as tmp,
        bench_cluster(Path(tmp), args.max_replicas, monitoring=False) as cluster,
    ):
        for model in args.models:
            batch, datatype = model_input(model)
            req = request(model, batch, datatype)
            for count in range(1, args.max_replicas + 1):
                replicas = cluster.start_replicas(model, count)
                haproxy = cluster.start_haproxy(model, count, "roundrobin")
                try:
                    rate = throughput(cluster.target(), req, args.clients, args.seconds)
                finally:
                    cluster.stop(haproxy)
                    for proc in replicas:
                        cluster.stop(proc)
                figures[f"{model}_{count}r_per_s"] = rate
                one = figures[f"{model}_1r_per_s"]
                ratio = rate / one if one > 0 else 0.0
                if count > 1:
                    figures[f"{model}_{count}r_vs_1r"] = ratio
                print(
                    f"  {model:<24} {count} replica(s): {rate:7.1f} req/s  ({ratio:.2f}x)",
                    flush=True,
                )
    print("RESULT " + " ".join(f"{k}={v:.2f}" for k, v in figures.items()), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main(sys.argv[1:]))
