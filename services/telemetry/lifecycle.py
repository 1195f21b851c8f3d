"""How a long-running component learns to stop: SIGTERM (Kubernetes, supervisors) or Ctrl-C.

Both set one event, so the main thread can leave its wait and shut the server
down gracefully instead of dying inside a request.
"""

from __future__ import annotations

import signal
import threading


def stop_requested() -> threading.Event:
    """An event set by the first SIGTERM or SIGINT; call from the main thread."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop
