"""`model-server` entry point: the only place that picks real or simulated adapters."""

from __future__ import annotations

import signal
import sys
import threading

from prometheus_client import start_http_server

from services.model_server import config as server_config
from services.model_server.server import StartupError, start
from services.telemetry import logs, tracing


def main(argv: list[str]) -> int:
    config = server_config.parse(argv)
    log = logs.configure("model-server", config.simulated)
    tracing.configure("model-server", config.platform, config.otlp_endpoint, config.trace_file)
    if config.metrics_listen:
        host, _, port = config.metrics_listen.rpartition(":")
        start_http_server(int(port), addr=host or "127.0.0.1")
    try:
        running = start(config)
    except StartupError as err:
        log.error("%s", err)
        print(f"model-server: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"READY port={running.port}", flush=True)
    stop.wait()
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
