"""`acs` entry point: the only place that picks real or simulated adapters."""

from __future__ import annotations

import sys

from services.attest import config as acs_config
from services.attest.server import start
from services.telemetry import health, lifecycle, logs, tracing


def main(argv: list[str]) -> int:
    config = acs_config.parse(argv)
    log = logs.configure("acs", config.simulated)
    tracing.configure("acs", config.platform, config.otlp_endpoint, config.trace_file)
    probes = health.Health("acs", config.simulated)
    if config.metrics_listen:
        health.serve(config.metrics_listen, probes)
    running = start(config)
    probes.ready()
    stop = lifecycle.stop_requested()
    print(f"READY public={running.public_port} admin={running.admin_port}", flush=True)
    stop.wait()
    log.info("shutting down")
    probes.not_ready("shutting down")
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
