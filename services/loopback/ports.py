"""Loopback ports: one the kernel picks, and waiting until a process listens on one.

A picked port comes from the kernel's ephemeral range (bind to port 0), which
configured services keep clear of (the local cluster's defaults and the tests'
fixed ports are below it), so it is never one a service is about to listen on.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any

HOST = "127.0.0.1"


def kernel_port() -> int:
    """A port free right now, as the kernel hands out for bind(0)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def listening(process: subprocess.Popen[Any], port: int, deadline: float) -> bool:
    """True once `port` accepts connections; False as soon as `process` has exited, or
    at `deadline` (time.monotonic()). The caller tells the two apart by polling it."""
    while True:
        try:
            socket.create_connection((HOST, port), timeout=1.0).close()
            return True
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
