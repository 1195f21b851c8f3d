"""Turns a node's EPC snapshot into the metrics of the scaler contract, at scrape time.

Reading the source on every scrape (a custom collector, not gauges updated by a
loop) keeps the counters exact and means a dead source shows as missing series,
which the controller treats as "blind" rather than as zero paging.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.scaler.epc.errors import EpcError
from services.scaler.epc.snapshot import EpcSnapshot, EpcSource

log = logging.getLogger("epc-exporter")


class EpcCollector(Collector):
    def __init__(self, source: EpcSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        try:
            snap = self._source.snapshot()
        except (EpcError, OSError) as err:
            log.error("EPC source failed, exporting nothing this scrape: %s", err)
            return
        yield from metrics(snap)


def metrics(snap: EpcSnapshot) -> Iterator[Metric]:
    node = [snap.node]

    def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
        family = GaugeMetricFamily(name, doc, labels=["node"])
        family.add_metric(node, value)
        return family

    yield gauge("s3ml_epc_size_bytes", "Usable EPC of the node", snap.epc_bytes)
    yield gauge("s3ml_epc_pages_in_use", "EPC pages in use", snap.pages_in_use)
    for name, value, doc in (
        ("s3ml_epc_pages_paged_in", snap.paged_in, "EPC pages paged in (ELDU), 4 KiB"),
        ("s3ml_epc_pages_paged_out", snap.paged_out, "EPC pages paged out (EWB), 4 KiB"),
    ):
        if value is not None:  # the in-kernel driver has no paging counter
            counter = CounterMetricFamily(name, doc, labels=["node"])
            counter.add_metric(node, value)
            yield counter
    yield gauge("s3ml_epc_enclaves", "Enclaves running on the node", len(snap.enclaves))
    yield gauge(
        "s3ml_epc_foreign_enclaves",
        "Enclaves that are not s3ml model servers",
        snap.foreign_enclaves,
    )
    working = GaugeMetricFamily(
        "s3ml_epc_enclave_working_set_bytes",
        "EPC working set of each enclave",
        labels=["node", "enclave", "kind"],
    )
    seen: set[str] = set()
    for enclave in snap.enclaves:
        label = enclave.name if enclave.name not in seen else f"{enclave.name}@{enclave.pid}"
        seen.add(label)
        working.add_metric([snap.node, label, enclave.kind], enclave.working_set_bytes)
    yield working
    yield gauge("s3ml_epc_simulated", "1 on the simulated EPC pool", 1 if snap.simulated else 0)
