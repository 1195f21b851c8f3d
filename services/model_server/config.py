"""Model server configuration: parsed once from flags into a frozen value."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from services.attest.config import PLATFORMS
from services.scaler.epc.paging import DEFAULT_EXTRA_DELAY_US

DATA_PLANES = ("python", "native")


@dataclass(frozen=True)
class ServerConfig:
    service: str
    models: tuple[str, ...]
    models_dir: Path
    listen: str
    acs: str
    acs_mrenclave: bytes
    platform: str
    sim_dir: Path
    manifest: Path | None
    node: str
    replica: str
    pool: int
    threads: int
    workers: int
    processes: int
    max_batch: int
    max_queue: int
    max_message_bytes: int
    metrics_listen: str
    otlp_endpoint: str
    trace_file: Path | None
    epc_pool: Path | None = None
    epc_extra_delay_us: float = DEFAULT_EXTRA_DELAY_US
    data_plane: str = "native"

    @property
    def simulated(self) -> bool:
        return self.platform == "sim"


def parse(argv: list[str]) -> ServerConfig:
    p = argparse.ArgumentParser(prog="model-server", description="s3ml enclave model server")
    p.add_argument("--service", required=True, help="ACS service this replica belongs to")
    p.add_argument("--model", action="append", required=True, dest="models", help="model name")
    p.add_argument("--models-dir", type=Path, required=True)
    p.add_argument("--listen", default="127.0.0.1:8443")
    p.add_argument("--acs", required=True, help="HOST:PORT of the ACS public port")
    p.add_argument("--acs-mrenclave", help="expected ACS MRENCLAVE (hex)")
    p.add_argument("--acs-mrenclave-file", type=Path)
    p.add_argument("--platform", choices=PLATFORMS, default="sim")
    p.add_argument("--sim-dir", type=Path, default=Path("/var/lib/s3ml/sim"))
    p.add_argument("--manifest", type=Path, help="rendered Gramine manifest (sim measurement)")
    p.add_argument("--node", default="node-0")
    p.add_argument("--replica", default="replica-0")
    p.add_argument("--replica-suffix", default="", help=argparse.SUPPRESS)
    p.add_argument("--pool", type=int, default=2, help="interpreters per model")
    p.add_argument("--threads", type=int, default=1, help="threads per interpreter")
    p.add_argument("--workers", type=int, default=8, help="gRPC worker threads")
    p.add_argument(
        "--processes",
        type=int,
        default=1,
        help="server processes sharing the port (SO_REUSEPORT); each attests on its own",
    )
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-queue", type=int, default=32)
    p.add_argument("--max-message-mib", type=int, default=16)
    p.add_argument("--metrics-listen", default="")
    p.add_argument("--otlp-endpoint", default="")
    p.add_argument("--trace-file", type=Path)
    p.add_argument(
        "--epc-pool",
        type=Path,
        help="sim only: the node's EPC pool file (<state>/epc/<node>.pool) to account in",
    )
    p.add_argument(
        "--epc-extra-delay-us",
        type=float,
        default=DEFAULT_EXTRA_DELAY_US,
        help="sim EPC: calibrated delay per paged 4 KiB page (docs/epc.md)",
    )
    p.add_argument(
        "--data-plane",
        choices=DATA_PLANES,
        default="native",
        help="who serves requests: a C++ child (native, the default) or this process (python); "
        "docs/serving.md",
    )
    a = p.parse_args(argv)
    if a.acs_mrenclave_file:
        mrenclave = a.acs_mrenclave_file.read_text().strip()
    elif a.acs_mrenclave:
        mrenclave = a.acs_mrenclave
    else:
        p.error("give --acs-mrenclave or --acs-mrenclave-file: the ACS must be pinned")
    if a.epc_pool and a.platform != "sim":
        p.error("--epc-pool is for the simulated platform; on SGX the real EPC is used")
    if a.processes > 1 and a.listen.endswith(":0"):
        p.error("--processes > 1 needs a fixed port in --listen (the processes share it)")
    for name, value, low, high in (
        ("--processes", a.processes, 1, 64),
        ("--pool", a.pool, 1, 64),
        ("--threads", a.threads, 1, 64),
        ("--max-batch", a.max_batch, 1, 1024),
        ("--max-queue", a.max_queue, 0, 10_000),
    ):
        if not low <= value <= high:
            p.error(f"{name} must be between {low} and {high}")
    return ServerConfig(
        service=a.service,
        models=tuple(a.models),
        models_dir=a.models_dir,
        listen=a.listen,
        acs=a.acs,
        acs_mrenclave=bytes.fromhex(mrenclave),
        platform=a.platform,
        sim_dir=a.sim_dir,
        manifest=a.manifest,
        node=a.node,
        replica=a.replica + a.replica_suffix,
        pool=a.pool,
        threads=a.threads,
        workers=a.workers,
        processes=a.processes,
        max_batch=a.max_batch,
        max_queue=a.max_queue,
        max_message_bytes=a.max_message_mib * 1024 * 1024,
        metrics_listen=a.metrics_listen,
        otlp_endpoint=a.otlp_endpoint,
        trace_file=a.trace_file,
        epc_pool=a.epc_pool,
        epc_extra_delay_us=a.epc_extra_delay_us,
        data_plane=a.data_plane,
    )
