"""`model-server` entry point: the only place that picks real or simulated adapters."""

from __future__ import annotations

import os
import subprocess
import sys

from services.model_server import config as server_config
from services.model_server.server import StartupError, start
from services.telemetry import health, lifecycle, logs, tracing

WATCH_SECONDS = 1.0  # how often a replica checks that its data plane still serves


def supervise(argv: list[str], processes: int) -> int:
    """Runs `processes` single-process servers on one port; READY once all are."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    # -P: `-m` would put the working directory first on sys.path, and run from a source
    # checkout the children would import the sources instead of this build's modules.
    module = [sys.executable, "-P", "-m", "services.model_server.main"]
    children = [
        subprocess.Popen(
            [*module, *argv, "--processes", "1", f"--replica-suffix=-p{i}"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(processes)
    ]
    stop = lifecycle.stop_requested()
    port = ""
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        if not line.startswith("READY"):
            for other in children:
                other.terminate()
            return 2
        port = line.split("=")[1].strip()
    print(f"READY port={port} processes={processes}", flush=True)
    while not stop.wait(1.0):
        if any(child.poll() is not None for child in children):
            break
    for child in children:
        child.terminate()
    return max(child.wait() for child in children)


def main(argv: list[str]) -> int:
    config = server_config.parse(argv)
    if config.processes > 1:
        return supervise(argv, config.processes)
    log = logs.configure("model-server", config.simulated)
    tracing.configure("model-server", config.platform, config.otlp_endpoint, config.trace_file)
    probes = health.Health("model-server", config.simulated)
    if config.metrics_listen:
        health.serve(config.metrics_listen, probes)
    try:
        running = start(config)
    except StartupError as err:
        log.error("%s", err)
        print(f"model-server: {err}", file=sys.stderr)
        return 2
    probes.ready()
    stop = lifecycle.stop_requested()
    print(f"READY port={running.port}", flush=True)
    while not stop.wait(WATCH_SECONDS):
        if (why := running.failure()) is not None:
            # Nothing serves the port any more: exit, so the supervisor (or the kubelet)
            # restarts the replica, instead of staying up and ready in name only.
            log.error("%s; exiting so this replica is restarted", why)
            probes.not_ready(why)
            running.stop(0)
            return 3
    probes.not_ready("shutting down")
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
