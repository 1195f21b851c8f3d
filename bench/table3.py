"""Table 3 of S3ML: p99 under EPC interference, HAProxy round robin vs least connections vs s3ml.

3 emulated nodes with one attested replica of the model each, behind HAProxy
(TCP mode, TLS to the enclaves); an open-loop Poisson load, a fresh mTLS
connection per request (bench/timeline.py says why), its rate derived from the
calibration (interference.offered_rate); the EPC
stressor on node-0 during 20-40 % and 60-80 % of each run (the paper's
minutes 2-4 and 6-8 of 10). Policies: `balance roundrobin`, `balance
leastconn`, and s3ml = roundrobin + the controller (Algorithm 1) setting
weights over the runtime API from paging rates read from Prometheus, which
scrapes the nodes' EPC exporters every second. TH per model is calibrated in
the same cluster first (bench/interference.py). Sim platform, 2 shared cores.
Run: bazel run //bench:table3 -- [--quick] [--models ...] [--seconds 70]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.cluster_harness import SCRAPE_INTERVAL, bench_cluster
from bench.interference import (
    POLICIES,
    ControlSettings,
    Run,
    Stress,
    calibrate,
    offered_rate,
    run_policy,
)
from bench.load import request
from bench.plots import latency_over_time
from bench.zoo_input import model_input
from services.scaler.controller.state import ModelSlo
from services.scaler.profile import DEFAULT_SLOS_MS
from tests.model_server.harness import MODELS

SHORT = {"roundrobin": "rr", "leastconn": "lc", "s3ml": "s3ml"}


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="table3", description=__doc__)
    p.add_argument("--models", nargs="*", default=list(MODELS))
    p.add_argument("--seconds", type=float, default=70.0, help="length of one model x policy run")
    p.add_argument("--rate", type=float, default=0.0, help="req/s; 0: from the calibration")
    p.add_argument("--stress-mib", type=int, default=96, help="stressor size (usable EPC 93.5 MiB)")
    p.add_argument("--stress-rate-mib-s", type=float, default=96.0)
    p.add_argument("--calibration-step-s", type=float, default=4.0)
    p.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "s3ml-bench" / "table3"
    )
    p.add_argument("--state-dir", type=Path, help="keep logs and state here (default: a temp dir)")
    p.add_argument("--policies", nargs="*", default=list(POLICIES), choices=POLICIES)
    p.add_argument("--quick", action="store_true", help="smoke: one model, 24 s runs")
    a = p.parse_args(argv)
    if a.quick:
        a.models, a.seconds, a.calibration_step_s = a.models[:1], 24.0, 2.0
    return a


def report_model(model: str, runs: dict[str, Run], slo_ms: float) -> list[str]:
    rr = runs["roundrobin"].p99_ms
    lines = []
    for policy, run in runs.items():
        cut = 100 * (rr - run.p99_ms) / rr if rr > 0 else 0.0
        lines.append(
            f"  {model:<24} {policy:<10} p99 {run.p99_ms:8.1f} ms  vs RR {cut:6.1f} %  "
            f"{'within' if run.p99_ms <= slo_ms else 'VIOLATES'} SLO {slo_ms:.0f} ms  "
            f"{len(run.samples)} requests, {run.errors} failed"
        )
    return lines


def figures(model: str, runs: dict[str, Run], th: float) -> dict[str, float]:
    rr = runs["roundrobin"].p99_ms
    out = {f"{model}_p99_{SHORT[p]}_ms": r.p99_ms for p, r in runs.items()}
    out[f"{model}_reduction_vs_rr_pct"] = 100 * (rr - runs["s3ml"].p99_ms) / rr
    out[f"{model}_reduction_lc_vs_rr_pct"] = 100 * (rr - runs["leastconn"].p99_ms) / rr
    out[f"{model}_th_mb_s"] = th
    out[f"{model}_rate_per_s"] = len(runs["roundrobin"].samples) / runs["roundrobin"].seconds
    out[f"{model}_requests_s3ml"] = float(len(runs["s3ml"].samples))
    return out


def main(argv: list[str]) -> int:
    args = parse(argv)
    control = ControlSettings()
    stress = Stress(node=0, mib=args.stress_mib, rate_mib_s=args.stress_rate_mib_s)
    print(
        f"table3: SIMULATED SGX (sim EPC, real AES-GCM paging); 3 nodes share 2 cores; "
        "open-loop Poisson load, fresh mTLS connection per request; "
        f"{args.seconds:.0f} s per run, stressor {stress.mib} MiB at {stress.rate_mib_s:g} MiB/s "
        f"on node-0 at 20-40 % and 60-80 %; controller every {control.interval_s:g} s, "
        f"rate window {control.window}, N={control.intervals_over_threshold}, "
        f"M={control.recover_intervals}; Prometheus scrape {SCRAPE_INTERVAL}",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, float] = {}
    violations = 0
    with (
        tempfile.TemporaryDirectory(prefix="s3ml-table3-") as tmp,
        bench_cluster(Path(tmp)) as cluster,
    ):
        for model in args.models:
            batch, datatype = model_input(model)
            req = request(model, batch, datatype)
            slo_ms = DEFAULT_SLOS_MS[model]
            replicas = cluster.start_replicas(model, cluster.nodes)
            try:
                cal = calibrate(cluster, req, slo_ms, stress, args.calibration_step_s)
                print(
                    f"  {model}: TH {cal.threshold_mb_per_s:.1f} MB/s (rule {cal.rule}); steps "
                    + ", ".join(
                        f"{s.paging_mb_per_s:.0f} MB/s p99 {s.p99_ms:.0f} ms" for s in cal.steps
                    ),
                    flush=True,
                )
                rate = args.rate or offered_rate(cal, cluster.nodes)
                print(f"    offered load {rate:.1f} req/s", flush=True)
                slo = ModelSlo(
                    model, slo_ms, cal.threshold_mb_per_s, control.intervals_over_threshold
                )
                runs = {}
                for policy in args.policies:
                    runs[policy] = run_policy(
                        cluster, model, req, policy, stress, slo, control, args.seconds, rate
                    )
                    print(f"    {policy}: p99 {runs[policy].p99_ms:.1f} ms", flush=True)
                    for d in runs[policy].decisions:
                        print(f"      t={d.time - runs[policy].t0:5.1f} s {d.target}: {d.reason}")
            finally:
                for proc in replicas:
                    cluster.stop(proc)
            print("\n".join(report_model(model, runs, slo_ms)), flush=True)
            png = latency_over_time(runs, slo_ms, cal.threshold_mb_per_s, args.out / f"{model}.png")
            print(f"  plot: {png}", flush=True)
            violations += runs["s3ml"].p99_ms > slo_ms
            result.update(figures(model, runs, cal.threshold_mb_per_s))
    reductions = [v for k, v in result.items() if k.endswith("_reduction_vs_rr_pct")]
    result["min_p99_reduction_vs_rr_pct"] = float(np.min(reductions))
    result["slo_violations"] = float(violations)
    print("RESULT " + " ".join(f"{k}={v:.1f}" for k, v in result.items()), flush=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main(sys.argv[1:]))
