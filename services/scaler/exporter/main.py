"""`epc-exporter`: one per node, serves the node's EPC metrics to Prometheus."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.scaler.epc.errors import EpcError
from services.scaler.epc.hardware import InKernelSource, OotSource
from services.scaler.epc.pool import EpcPool, pool_path
from services.scaler.epc.snapshot import EpcSource
from services.scaler.exporter.collector import EpcCollector
from services.telemetry import health, lifecycle, logs

SOURCES = ("sim", "sgx-oot", "sgx-inkernel")


@dataclass(frozen=True)
class ExporterConfig:
    node: str
    source: str
    listen: str
    state_dir: Path
    proc: Path
    sys: Path
    cgroup: Path

    @property
    def simulated(self) -> bool:
        return self.source == "sim"


def parse(argv: list[str]) -> ExporterConfig:
    p = argparse.ArgumentParser(prog="epc-exporter", description=__doc__)
    p.add_argument("--node", required=True)
    p.add_argument("--source", choices=SOURCES, default="sim")
    p.add_argument("--listen", default="127.0.0.1:9465", help="HOST:PORT (port 0: any)")
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/s3ml/sim"),
                   help="sim: directory holding epc/<node>.pool")  # fmt: skip
    p.add_argument("--proc", type=Path, default=Path("/proc"), help=argparse.SUPPRESS)
    p.add_argument("--sys", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    p.add_argument("--cgroup", type=Path, default=Path("/sys/fs/cgroup"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    return ExporterConfig(a.node, a.source, a.listen, a.state_dir, a.proc, a.sys, a.cgroup)


def make_source(config: ExporterConfig) -> EpcSource:
    if config.source == "sim":
        return EpcPool(pool_path(config.state_dir, config.node), config.node)
    if config.source == "sgx-oot":
        return OotSource(config.node, config.proc, config.sys / "module/isgx/parameters")
    return InKernelSource(config.node, config.sys, config.cgroup, config.proc)


def main(argv: list[str]) -> int:
    config = parse(argv)
    log = logs.configure("epc-exporter", config.simulated)
    try:
        source = make_source(config)
    except (EpcError, OSError) as err:
        print(f"epc-exporter: {err}", file=sys.stderr)
        return 2
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EpcCollector(source))
    probes = health.Health("epc-exporter", config.simulated)
    server = health.serve(config.listen, probes, registry)
    port = server.server_address[1]
    log.info("node %s: exporting EPC metrics from %s on port %d", config.node, config.source, port)
    probes.ready()
    stop = lifecycle.stop_requested()
    print(f"READY port={port}", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
