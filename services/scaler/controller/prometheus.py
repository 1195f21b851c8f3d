"""Reads node EPC state and model load from the Prometheus HTTP API.

Paging follows the metrics contract: (rate(in[W]) + rate(out[W])) * 4096 / 1e6
MB/s per node. A node whose newest sample is older than `stale_after_s`, or
whose values are NaN, comes back with fresh=False; an unreachable or failing
Prometheus raises MetricsUnavailableError — the controller then holds weights.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from services.scaler.controller.state import NodeEpc


class MetricsUnavailableError(Exception):
    """Prometheus could not answer; the message says why (never a secret)."""


@dataclass(frozen=True)
class Snapshot:
    nodes: dict[str, NodeEpc]
    requests_per_s: dict[str, float]


def paging_query(window: str) -> str:
    return (
        f"sum by (node) (rate(s3ml_epc_pages_paged_in_total[{window}]) "
        f"+ rate(s3ml_epc_pages_paged_out_total[{window}])) * 4096 / 1e6"
    )


class PrometheusSource:
    def __init__(
        self,
        url: str,
        window: str = "30s",
        stale_after_s: float = 60.0,
        timeout_s: float = 3.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = url.rstrip("/") + "/api/v1/query"
        self._window = window
        self._stale_after = stale_after_s
        self._timeout = timeout_s
        self._clock = clock

    def _query(self, promql: str, by: str) -> dict[str, float]:
        """label value -> sample value of an instant vector query."""
        url = self._url + "?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=self._timeout) as resp:  # noqa: S310
                doc = json.loads(resp.read())
        except (OSError, ValueError) as err:
            raise MetricsUnavailableError(f"Prometheus at {self._url}: {err}") from err
        if doc.get("status") != "success":
            raise MetricsUnavailableError(f"Prometheus query failed: {doc.get('error', doc)}")
        out: dict[str, float] = {}
        for series in doc.get("data", {}).get("result", []):
            key = series.get("metric", {}).get(by)
            if key is not None:
                out[key] = float(series["value"][1])
        return out

    def _gauge(self, name: str) -> dict[str, float]:
        return self._query(f"max by (node) ({name})", "node")

    def read(self) -> Snapshot:
        gauge = self._gauge
        paging = self._query(paging_query(self._window), "node")
        newest = self._query("max by (node) (timestamp(s3ml_epc_pages_in_use))", "node")
        size, used = gauge("s3ml_epc_size_bytes"), gauge("s3ml_epc_pages_in_use")
        enclaves, foreign = gauge("s3ml_epc_enclaves"), gauge("s3ml_epc_foreign_enclaves")
        rps = self._query(
            f"sum by (model) (rate(s3ml_inference_requests_total[{self._window}]))", "model"
        )
        now = self._clock()
        nodes = {}
        for node in sorted(set(paging) | set(newest) | set(size)):
            values = [
                paging.get(node, math.nan),
                size.get(node, math.nan),
                used.get(node, math.nan),
            ]
            fresh = (
                all(math.isfinite(v) for v in values)
                and now - newest.get(node, -math.inf) <= self._stale_after
            )
            nodes[node] = NodeEpc(
                node=node,
                epc_bytes=_int(size.get(node)),
                pages_in_use=_int(used.get(node)),
                paging_mb_per_s=values[0] if math.isfinite(values[0]) else 0.0,
                enclaves=_int(enclaves.get(node)),
                foreign_enclaves=_int(foreign.get(node)),
                fresh=fresh,
            )
        return Snapshot(nodes, {m: v for m, v in rps.items() if math.isfinite(v)})


def _int(value: float | None) -> int:
    return int(value) if value is not None and math.isfinite(value) and value >= 0 else 0
