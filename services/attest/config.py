"""ACS configuration: parsed once from flags into a frozen value, validated."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

PLATFORMS = ("sim", "gramine-sgx")


@dataclass(frozen=True)
class AcsConfig:
    state_dir: Path
    platform: str
    listen: str
    admin_listen: str
    metrics_listen: str
    sim_dir: Path
    manifest: Path | None
    collateral_file: Path | None
    dns_names: tuple[str, ...]
    nonce_ttl_seconds: float
    otlp_endpoint: str
    trace_file: Path | None
    verdict_key: Path | None = None
    verdict_max_age_seconds: float = 300.0

    @property
    def simulated(self) -> bool:
        return self.platform == "sim"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="acs", description="s3ml attestation configuration service (ACS)"
    )
    p.add_argument("--state-dir", type=Path, required=True, help="sealed state (0700)")
    p.add_argument("--platform", choices=PLATFORMS, default="sim")
    p.add_argument("--listen", default="127.0.0.1:7443", help="instances and clients (TLS)")
    p.add_argument("--admin-listen", default="127.0.0.1:7444", help="administrators (mTLS)")
    p.add_argument("--metrics-listen", default="", help="host:port for Prometheus /metrics")
    p.add_argument("--sim-dir", type=Path, help="simulated SGX PKI (default: STATE/sim)")
    p.add_argument("--manifest", type=Path, help="rendered Gramine manifest (sim measurement)")
    p.add_argument("--collateral-file", type=Path, help="PCS collateral JSON (hardware)")
    p.add_argument("--dns-name", action="append", dest="dns_names", default=[])
    p.add_argument("--nonce-ttl", type=float, default=60.0)
    p.add_argument("--otlp-endpoint", default="")
    p.add_argument("--trace-file", type=Path)
    p.add_argument(
        "--verdict-key",
        type=Path,
        help="PEM public key or certificate of the TPM/IMA verifier (high_integrity releases)",
    )
    p.add_argument(
        "--verdict-max-age", type=float, default=300.0, help="seconds a host verdict stays fresh"
    )
    return p


def parse(argv: list[str]) -> AcsConfig:
    args = parser().parse_args(argv)
    if args.platform == "gramine-sgx" and args.collateral_file is None:
        parser().error("--collateral-file is required on gramine-sgx (PCCS-fetched collateral)")
    if not 1.0 <= args.nonce_ttl <= 3600.0:
        parser().error("--nonce-ttl must be between 1 and 3600 seconds")
    if not 1.0 <= args.verdict_max_age <= 86400.0:
        parser().error("--verdict-max-age must be between 1 and 86400 seconds")
    return AcsConfig(
        state_dir=args.state_dir,
        platform=args.platform,
        listen=args.listen,
        admin_listen=args.admin_listen,
        metrics_listen=args.metrics_listen,
        sim_dir=args.sim_dir or args.state_dir / "sim",
        manifest=args.manifest,
        collateral_file=args.collateral_file,
        dns_names=tuple(args.dns_names or ["acs.s3ml.local", "localhost"]),
        nonce_ttl_seconds=args.nonce_ttl,
        otlp_endpoint=args.otlp_endpoint,
        trace_file=args.trace_file,
        verdict_key=args.verdict_key,
        verdict_max_age_seconds=args.verdict_max_age,
    )
