"""One HTTP endpoint per component: Prometheus `/metrics`, `/healthz` and `/readyz`.

Kubernetes probes and HAProxy/SRE tooling need liveness (the process answers)
apart from readiness (attested, models loaded, serving); both answers say
whether the component runs on the simulated platform.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


class Health:
    """Readiness a component sets once it can do its job, and clears when it cannot."""

    def __init__(self, component: str, simulated: bool) -> None:
        self.component = component
        self.simulated = simulated
        self._reason = "starting"
        self._lock = threading.Lock()

    def ready(self) -> None:
        with self._lock:
            self._reason = ""

    def not_ready(self, reason: str) -> None:
        with self._lock:
            self._reason = reason

    def state(self) -> tuple[bool, str]:
        with self._lock:
            return not self._reason, self._reason

    def document(self, probe: str) -> tuple[int, bytes]:
        ready, reason = self.state()
        ok = probe == "healthz" or ready
        body: dict[str, object] = {
            "component": self.component,
            "status": "ok" if ok else "unavailable",
            "simulated": self.simulated,
        }
        if not ok:
            body["reason"] = reason
        return (200 if ok else 503), json.dumps(body).encode() + b"\n"


def _handler(health: Health, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/readyz"):
                code, body = health.document(path[1:])
                self._send(code, "application/json", body)
            else:
                self._send(404, "text/plain", b"try /metrics, /healthz or /readyz\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None  # probes every second would drown the component's log

    return Handler


def serve(
    listen: str, health: Health, registry: CollectorRegistry = REGISTRY
) -> ThreadingHTTPServer:
    """Serves the three paths on `host:port` (port 0: any) from a daemon thread."""
    host, _, port = listen.rpartition(":")
    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), _handler(health, registry))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
