"""`s3mlctl status`: one table of what a running cluster is doing.

The cluster writes `endpoints.json` into its state directory (the contract
between `make up` and this command); from there we ask each component's
`/readyz`, HAProxy's runtime API (`show stat`) for load-balancer state and
weights, and Prometheus for EPC use and latency. A source that does not
answer shows as `?` instead of failing the whole table.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc

from s3ml.scaler.v1 import scaler_pb2, scaler_pb2_grpc
from services.attest.platform.base import SIM_WARNING
from services.scaler.api.render import status_text
from services.scaler.backends.haproxy import RuntimeApi
from services.scaler.controller.ports import BackendError

TIMEOUT = 2.0
MIB = 1 << 20


class StatusError(Exception):
    """The cluster's endpoint description is missing or unreadable."""


@dataclass(frozen=True)
class ReplicaEndpoint:
    name: str
    node: str
    model: str
    address: str
    health_url: str
    backend: str


@dataclass(frozen=True)
class ClusterEndpoints:
    platform: str
    replicas: tuple[ReplicaEndpoint, ...]
    components: dict[str, str]  # component -> health URL
    haproxy_socket: str
    prometheus_url: str
    slo_ms: dict[str, float]
    scaler: str = ""  # host:port of s3ml.scaler.v1, when a controller runs


def load(state: Path) -> ClusterEndpoints:
    path = state / "endpoints.json"
    try:
        raw = json.loads(path.read_text())
        return ClusterEndpoints(
            platform=str(raw["platform"]),
            replicas=tuple(ReplicaEndpoint(**r) for r in raw["replicas"]),
            components={str(k): str(v) for k, v in raw["components"].items()},
            haproxy_socket=str(raw["haproxy_socket"]),
            prometheus_url=str(raw["prometheus_url"]),
            slo_ms={str(k): float(v) for k, v in raw.get("slo_ms", {}).items()},
            scaler=str(raw.get("scaler", "")),
        )
    except FileNotFoundError as err:
        raise StatusError(
            f"no cluster described in {state} (no endpoints.json); start one with `make up` "
            "or pass --state DIR of a running cluster"
        ) from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise StatusError(
            f"{path} is unreadable ({err}); restart the cluster with `make up`"
        ) from err


def probe(url: str) -> str:
    """`ready`, `NOT READY (reason)` or `down`, from a component's /readyz."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - our URL
            return "ready" if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        try:
            reason = json.loads(err.read()).get("reason", "")
        except ValueError:
            reason = ""
        return f"NOT READY ({reason})" if reason else f"HTTP {err.code}"
    except OSError:
        return "down"


def haproxy_servers(sock_path: str) -> dict[tuple[str, str], dict[str, str]]:
    """(backend, server) -> row of HAProxy's `show stat` CSV."""
    return parse_show_stat(RuntimeApi(Path(sock_path), TIMEOUT).command("show stat"))


def parse_show_stat(text: str) -> dict[tuple[str, str], dict[str, str]]:
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        (row["pxname"], row["svname"]): row
        for row in rows
        if row.get("svname") not in (None, "FRONTEND", "BACKEND")
    }


def prometheus_vector(base_url: str, query: str) -> dict[str, float]:
    """First label value of each series -> value; empty when Prometheus cannot answer."""
    url = f"{base_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as response:  # noqa: S310 - our URL
            body = json.loads(response.read())
    except (OSError, ValueError):
        return {}
    out = {}
    for series in body.get("data", {}).get("result", []):
        labels = series.get("metric", {})
        key = next(iter(labels.values()), "")
        value = float(series["value"][1])
        if not math.isnan(value):
            out[key] = value
    return out


P99_QUERY = (
    "histogram_quantile(0.99, sum by (model, le) (rate(s3ml_inference_latency_seconds_bucket[1m])))"
)
EPC_USED_QUERY = "max by (node) (s3ml_epc_pages_in_use) * 4096"
EPC_SIZE_QUERY = "max by (node) (s3ml_epc_size_bytes)"


def render(endpoints: ClusterEndpoints) -> str:
    try:
        lb = haproxy_servers(endpoints.haproxy_socket)
    except BackendError:
        lb = {}
    p99 = prometheus_vector(endpoints.prometheus_url, P99_QUERY)
    used = prometheus_vector(endpoints.prometheus_url, EPC_USED_QUERY)
    size = prometheus_vector(endpoints.prometheus_url, EPC_SIZE_QUERY)
    header = ("NODE", "MODEL", "REPLICA", "HEALTH", "LB", "WEIGHT", "EPC MiB", "P99 ms", "SLO ms")
    rows: list[tuple[str, ...]] = [header]
    for r in endpoints.replicas:
        server = lb.get((r.backend, r.name), {})
        epc = (
            f"{used[r.node] / MIB:.1f}/{size[r.node] / MIB:.1f}"
            if r.node in used and r.node in size
            else "-"
        )
        latency = f"{p99[r.model] * 1000:.1f}" if r.model in p99 else "-"
        slo = endpoints.slo_ms.get(r.model)
        rows.append((
            r.node, r.model, r.address, probe(r.health_url),
            server.get("status", "?"), server.get("weight", "?"), epc, latency,
            f"{slo:.0f}" if slo else "-",
        ))  # fmt: skip
    platform = endpoints.platform
    lines = [f"platform: {platform}" + (f" — {SIM_WARNING}" if platform == "sim" else "")]
    lines += [_table(rows), ""]
    lines += [f"{name:<24} {probe(url)}" for name, url in sorted(endpoints.components.items())]
    if endpoints.scaler:
        lines += ["", scaler_section(endpoints.scaler)]
    return "\n".join(lines)


def scaler_section(address: str) -> str:
    """The controller's view: paging per node, weights and counters, SLOs, decisions."""
    try:
        with grpc.insecure_channel(address) as channel:
            status = scaler_pb2_grpc.ScalerStub(channel).GetStatus(
                scaler_pb2.GetStatusRequest(decisions=10), timeout=TIMEOUT
            )
    except grpc.RpcError as err:
        return f"scaler at {address}: {err.code().name} (is the cluster running?)"
    return status_text(status)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def cmd_status(args: argparse.Namespace) -> int:
    """Replicas per node, health, load-balancer state and weights, EPC use, p99 vs SLO."""
    print(render(load(args.state)))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="one table of a running cluster")
    status.add_argument(
        "--state", type=Path, default=Path(".state"), help="state directory of `make up`"
    )
    status.set_defaults(func=cmd_status)
