"""`epc-stressor`: occupies and churns a node's sim EPC, like stress-SGX on hardware."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.scaler.epc.errors import EpcError
from services.scaler.epc.paging import DEFAULT_EXTRA_DELAY_US, PagingCost
from services.scaler.epc.pool import EpcPool, pool_path
from services.scaler.epc.snapshot import PAGE_SIZE
from services.scaler.stressor.stressor import StressPlan, run
from services.telemetry import lifecycle, logs


def parse(argv: list[str]) -> tuple[argparse.Namespace, StressPlan]:
    p = argparse.ArgumentParser(prog="epc-stressor", description=__doc__)
    p.add_argument("--node", required=True)
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/s3ml/sim"))
    p.add_argument("--mib", type=int, required=True, help="EPC to allocate, MiB")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--rate-mib-s", type=float, default=0.0, help="touch rate, MiB/s")
    rate.add_argument("--rate-pages-s", type=float, help="touch rate, 4 KiB pages/s")
    p.add_argument("--duration", type=float, default=0.0, help="seconds; 0 runs until killed")
    p.add_argument("--name", default="stressor")
    p.add_argument("--extra-delay-us", type=float, default=DEFAULT_EXTRA_DELAY_US)
    a = p.parse_args(argv)
    if a.mib <= 0 or a.rate_mib_s < 0 or (a.rate_pages_s or 0) < 0 or a.duration < 0:
        p.error("--mib must be positive; rates and --duration non-negative")
    pages_s = a.rate_pages_s if a.rate_pages_s is not None else a.rate_mib_s * 2**20 / PAGE_SIZE
    return a, StressPlan(a.mib, pages_s, a.duration, a.name)


def main(argv: list[str]) -> int:
    args, plan = parse(argv)
    log = logs.configure("epc-stressor", simulated=True)
    stop = lifecycle.stop_requested()
    try:
        pool = EpcPool(pool_path(args.state_dir, args.node), args.node,
                       cost=PagingCost(args.extra_delay_us))  # fmt: skip
        report = run(pool, plan, stop, lambda: print("READY", flush=True))
    except EpcError as err:
        print(f"epc-stressor: {err}", file=sys.stderr)
        return 2
    log.info("node %s: touched %d pages in %.1f s, paged in %d, out %d", args.node,
             report.touched, report.seconds, report.paged_in, report.paged_out)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
