"""`acs` entry point: the only place that picks real or simulated adapters."""

from __future__ import annotations

import signal
import sys
import threading

from prometheus_client import start_http_server

from services.attest import config as acs_config
from services.attest.server import start
from services.telemetry import logs, tracing


def main(argv: list[str]) -> int:
    config = acs_config.parse(argv)
    log = logs.configure("acs", config.simulated)
    tracing.configure("acs", config.platform, config.otlp_endpoint, config.trace_file)
    if config.metrics_listen:
        host, _, port = config.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    running = start(config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY public={running.public_port} admin={running.admin_port}", flush=True)
    stop.wait()
    log.info("shutting down")
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
