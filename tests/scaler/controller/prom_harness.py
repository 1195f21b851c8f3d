"""A real Prometheus (Debian binary) scraping an EPC exporter the test drives.

The exporter publishes the metrics contract of services/scaler (per node
labels) from a private registry; `interfere(node, MB/s)` makes a background
thread advance that node's paging counters at that rate.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from services.loopback.ports import kernel_port
from tests.scaler.backends.haproxy_harness import binary

EPC_BYTES = int(93.5 * (1 << 20))


class Exporter:
    def __init__(self, nodes: list[str]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.size = Gauge("s3ml_epc_size_bytes", "usable EPC", ["node"], registry=r)
        self.in_use = Gauge("s3ml_epc_pages_in_use", "pages in use", ["node"], registry=r)
        self.paged_in = Counter("s3ml_epc_pages_paged_in", "paged in", ["node"], registry=r)
        self.paged_out = Counter("s3ml_epc_pages_paged_out", "paged out", ["node"], registry=r)
        self.enclaves = Gauge("s3ml_epc_enclaves", "enclaves", ["node"], registry=r)
        self.requests = Counter(
            "s3ml_inference_requests", "ModelInfer calls", ["model", "code"], registry=r
        )
        self.foreign = Gauge("s3ml_epc_foreign_enclaves", "foreign", ["node"], registry=r)
        for n in nodes:
            self.size.labels(n).set(EPC_BYTES)
            self.in_use.labels(n).set(2560)
            self.paged_in.labels(n)
            self.paged_out.labels(n)
            self.enclaves.labels(n).set(1)
            self.foreign.labels(n).set(0)
        self.port = kernel_port()
        self._rates: dict[str, float] = {}
        self._load: dict[str, float] = {}
        self._stop = threading.Event()
        start_http_server(self.port, addr="127.0.0.1", registry=r)
        threading.Thread(target=self._page, daemon=True).start()

    def interfere(self, node: str, mb_per_s: float) -> None:
        self._rates[node] = mb_per_s
        self.foreign.labels(node).set(1 if mb_per_s else 0)

    def load(self, model: str, requests_per_s: float) -> None:
        self._load[model] = requests_per_s

    def _page(self) -> None:
        while not self._stop.wait(0.1):
            for model, rps in list(self._load.items()):
                self.requests.labels(model, "OK").inc(rps * 0.1)
            for node, rate in list(self._rates.items()):
                pages = rate * 1e6 / 4096 * 0.1 / 2
                self.paged_in.labels(node).inc(pages)
                self.paged_out.labels(node).inc(pages)

    def close(self) -> None:
        self._stop.set()


@contextmanager
def prometheus(tmp: Path, exporter_port: int) -> Iterator[str]:
    port = kernel_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 500ms\n"
        "scrape_configs:\n"
        f"  - job_name: epc\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
    )
    proc = subprocess.Popen(
        [
            binary("prometheus"),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _has_epc(url), 30, "Prometheus scraping the exporter")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _has_epc(url: str) -> bool:
    try:
        query = f"{url}/api/v1/query?query=s3ml_epc_size_bytes"
        with urllib.request.urlopen(query, timeout=1) as r:  # noqa: S310 - loopback http
            return bool(json.loads(r.read())["data"]["result"])
    except OSError:
        return False


def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)
