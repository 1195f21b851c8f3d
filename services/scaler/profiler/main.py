"""`profiler --model NAME`: the offline profile of one model (S3ML 2.6, Figs. 3-5).

Runs a sim replica of the model against increasing EPC stressor interference on
a node's pool, records paging throughput and P50/P90/P95/P99 over N requests per
step, writes `<out>/<model>.json` (the controller's profile) and `<model>.png`.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from services.scaler.epc.paging import DEFAULT_EXTRA_DELAY_US, PagingCost
from services.scaler.epc.pool import MIB, EpcPool, pool_path
from services.scaler.profile import DEFAULT_SLOS_MS
from services.scaler.profiler import plot, runner
from services.telemetry import logs

DEFAULT_RATES = "0,4,8,16,32,64"
ZOO = Path(__file__).absolute().parents[3] / "services" / "model_server" / "zoo"


def parse(argv: list[str]) -> tuple[argparse.Namespace, runner.Plan]:
    p = argparse.ArgumentParser(prog="profiler", description=__doc__)
    p.add_argument("--model", required=True, help="model name, e.g. mobilenet_v1_f32")
    p.add_argument("--model-file", type=Path, help="the model's .tflite; default: the zoo's")
    p.add_argument("--slo-ms", type=float, help="p99 SLO; default: the paper's for the model")
    p.add_argument("--requests", type=int, default=2000, help="requests per step")
    p.add_argument("--rates-mib-s", default=DEFAULT_RATES, help="stressor touch rates per step")
    p.add_argument("--stressor-mib", type=int, help="stressor size; default 1.5x the usable EPC")
    p.add_argument("--usable-mib", type=float, default=93.5, help="usable EPC of a new pool")
    p.add_argument("--node", default="profile-node")
    p.add_argument("--state-dir", type=Path, required=True, help="holds epc/<node>.pool")
    p.add_argument("--out", type=Path, required=True, help="directory for JSON and PNG")
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--min-step-s", type=float, default=1.0, help="shortest step, seconds")
    p.add_argument(
        "--extra-delay-us",
        type=float,
        default=DEFAULT_EXTRA_DELAY_US,
        help="calibrated delay per paged 4 KiB page, replica and stressor (docs/epc.md)",
    )
    a = p.parse_args(argv)
    slo = a.slo_ms if a.slo_ms is not None else DEFAULT_SLOS_MS.get(a.model)
    if slo is None or slo <= 0:
        p.error(f"no default SLO for {a.model}; give --slo-ms")
    try:
        rates = tuple(float(r) for r in a.rates_mib_s.split(","))
    except ValueError:
        p.error("--rates-mib-s is a comma-separated list of numbers")
    if a.requests < 1 or any(r < 0 for r in rates):
        p.error("--requests must be positive and rates non-negative")
    # Larger than the EPC, so every cyclic touch of the stressor misses and the node's
    # paging follows the touch rate (stress-SGX oversubscribing the EPC).
    stressor = a.stressor_mib or int(a.usable_mib * 1.5)
    if a.model_file is None:
        a.model_file = ZOO / f"{a.model}.tflite"
    if not a.model_file.is_file():
        p.error(f"no model file {a.model_file}; give --model-file")
    return a, runner.Plan(a.model, slo, rates, a.requests, stressor, a.warmup_s, a.min_step_s)


def main(argv: list[str]) -> int:
    args, plan = parse(argv)
    log = logs.configure("profiler", simulated=True)
    usable = int(args.usable_mib * MIB) // 4096 * 4096
    cost = PagingCost(args.extra_delay_us)
    path = pool_path(args.state_dir, args.node)
    pool = EpcPool(path, args.node, max(usable, 128 * MIB), usable, cost=cost)
    replica = runner.LocalReplica(args.model_file, pool, f"{args.node}/profile-{args.model}")
    log.info("%s: working set %.1f MiB", args.model, replica.working_set_bytes / MIB)
    interference = functools.partial(
        runner.stressor_process, args.node, args.state_dir, plan.stressor_mib, cost
    )
    profile = runner.run(plan, replica, pool, interference)
    replica.memory.close()
    path = profile.save(args.out)
    image = plot.save(profile, args.out / f"{args.model}.png")
    print(f"PROFILE {path} {image} threshold_mb_per_s={profile.threshold_mb_per_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
