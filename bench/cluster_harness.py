"""A small local cluster for the scaler benchmarks: what `make up` runs, minus host integrity.

A real ACS (in this process) with the zoo sealed and registered as one service,
an EPC exporter per emulated node, Prometheus scraping them every second, model
server replicas accounted in their node's sim EPC pool (`--epc-pool`), HAProxy
in TCP mode (TLS passes through to the replicas) with a runtime API socket, and
the EPC stressor. Ports are fixed in 28000-28999, apart from `make up` and the
tests, and below the kernel's ephemeral range (32768-60999): 56xxx, used before,
could be held by any outgoing connection's local end, and then the bench refused
to start.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.load import Target
from deploy.local.rendering import haproxy_preamble
from deploy.local.supervisor import Supervisor
from services.scaler.backends.haproxy import RuntimeApi
from services.scaler.controller.ports import BackendError
from tests.attest.acs_harness import AcsEnv, running_acs, srcdir
from tests.model_server.harness import (
    MODELS,
    SERVICE,
    client_credentials,
    model_server_mrenclave,
    register,
    seal_zoo,
)

BASE_PORT = 28000
FRONTEND_PORT = BASE_PORT  # HAProxy frontend
PROMETHEUS_PORT = BASE_PORT + 90
HAPROXY_METRICS_PORT = BASE_PORT + 91


def replica_port(node: int) -> int:
    return BASE_PORT + 100 + node


def replica_metrics_port(node: int) -> int:
    return BASE_PORT + 200 + node


def exporter_port(node: int) -> int:
    return BASE_PORT + 300 + node


def replica_name(node: int, model: str) -> str:
    """deploy/local naming: the HAProxy backend derives the node from it."""
    return f"node-{node}-{model}"


def haproxy_config(model: str, nodes: int, balance: str, sock: Path) -> str:
    lines = [
        *haproxy_preamble(sock),
        f"frontend {model}",
        f"    bind 127.0.0.1:{FRONTEND_PORT}",
        f"    default_backend {model}_replicas",
        f"backend {model}_replicas",
        f"    balance {balance}",
    ]
    lines += [
        f"    server {replica_name(n, model)} 127.0.0.1:{replica_port(n)} "
        "check inter 1s fall 2 rise 1 weight 1"
        for n in range(nodes)
    ]
    return "\n".join(lines) + "\n"


# The paper's 10-minute timeline runs in ~70 s here, so the monitoring loop's time
# constants shrink with it: Prometheus scrapes the exporters twice a second.
SCRAPE_INTERVAL = "500ms"


def prometheus_config(nodes: int) -> str:
    targets = [f"127.0.0.1:{exporter_port(n)}" for n in range(nodes)]
    return (
        f"global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  evaluation_interval: {SCRAPE_INTERVAL}\n"
        "scrape_configs:\n  - job_name: epc-exporter\n"
        f"    static_configs:\n      - targets: {targets}\n"
    )


@dataclass
class BenchCluster:
    """Processes of one bench run; replicas and HAProxy are (re)started per model/policy."""

    state: Path
    nodes: int
    acs: AcsEnv
    sup: Supervisor
    target_tls: tuple[bytes, bytes, bytes]

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{PROMETHEUS_PORT}"

    @property
    def haproxy_socket(self) -> Path:
        return self.state / "haproxy.sock"

    def target(self, address: str = f"127.0.0.1:{FRONTEND_PORT}") -> Target:
        return Target(address, self.target_tls, f"{SERVICE}.s3ml.local")

    def pool(self, node: int) -> Path:
        return self.state / "epc" / f"node-{node}.pool"

    def start_replicas(self, model: str, count: int) -> list[subprocess.Popen[str]]:
        binary = srcdir() / "services" / "model_server" / "server"
        mrenclave = self.acs.trusted.bundle.acs_measurement.mrenclave.hex()
        procs = []
        for node in range(count):
            procs.append(self.sup.start(replica_name(node, model), [
                str(binary), "--service", SERVICE, "--model", model,
                "--models-dir", str(self.state / "models"), "--listen", f"127.0.0.1:{replica_port(node)}",
                "--acs", self.acs.target, "--acs-mrenclave", mrenclave, "--sim-dir", str(self.acs.sim_dir),
                "--node", f"node-{node}", "--replica", replica_name(node, model),
                "--pool", "1", "--threads", "1", "--workers", "16", "--max-queue", "256",
                "--epc-pool", str(self.pool(node)),
                "--metrics-listen", f"127.0.0.1:{replica_metrics_port(node)}",
            ]))  # fmt: skip
        return procs

    def start_haproxy(self, model: str, count: int, balance: str) -> subprocess.Popen[str]:
        cfg = self.state / f"haproxy-{model}-{balance}.cfg"
        cfg.write_text(haproxy_config(model, count, balance, self.haproxy_socket))
        proc = self.sup.start("haproxy", ["haproxy", "-f", str(cfg), "-db"], ready=None)
        wait_for(lambda: self.haproxy_socket.exists() and _haproxy_up(self), 20, "HAProxy")
        return proc

    def start_stressor(self, node: int, mib: int, rate_mib_s: float) -> subprocess.Popen[str]:
        binary = srcdir() / "services" / "scaler" / "stressor" / "stressor"
        # Lowest CPU priority: on hardware the stressor burns its own node's cores; here
        # the emulated nodes share 2 cores, and its AES-GCM paging must not slow the
        # replicas of the *other* nodes (which would hide what the balancer achieves).
        # Each supervised child is its own session, so with autogroup scheduling its
        # nice value alone would change nothing: its autogroup gets nice 19 as well.
        return self.sup.start(f"stressor-node-{node}", [
            "sh", "-c", 'echo 19 > /proc/self/autogroup 2>/dev/null; exec nice -n 19 "$@"',
            "stressor", str(binary), "--node", f"node-{node}", "--state-dir", str(self.state),
            "--mib", str(mib), "--rate-mib-s", str(rate_mib_s),
        ])  # fmt: skip

    def stop(self, proc: subprocess.Popen[str]) -> None:
        """Stops one child (SIGTERM, then SIGKILL) and forgets it."""
        name = next(c.name for c in self.sup.children if c.proc is proc)
        self.sup.stop_one(name, grace=15)


def _haproxy_up(cluster: BenchCluster) -> bool:
    try:
        servers = RuntimeApi(cluster.haproxy_socket).servers()
    except BackendError:
        return False
    return bool(servers) and all(s.op_state == 2 for s in servers)  # every replica passes checks


def wait_for(ready: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.25)
    raise RuntimeError(f"{what} was not ready within {seconds:.0f} s")


def _prometheus_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/-/ready", timeout=2) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except OSError:
        return False


def _start_monitoring(sup: Supervisor, state: Path, nodes: int) -> None:
    exporter = srcdir() / "services" / "scaler" / "exporter" / "exporter"
    for node in range(nodes):
        sup.start(f"epc-exporter-node-{node}", [
            str(exporter), "--node", f"node-{node}", "--source", "sim",
            "--state-dir", str(state), "--listen", f"127.0.0.1:{exporter_port(node)}",
        ])  # fmt: skip
    (state / "prometheus.yml").write_text(prometheus_config(nodes))
    sup.start("prometheus", [
        "prometheus", f"--config.file={state / 'prometheus.yml'}",
        f"--storage.tsdb.path={state / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
    ], ready=None)  # fmt: skip
    url = f"http://127.0.0.1:{PROMETHEUS_PORT}"
    wait_for(lambda: _prometheus_ready(url), 30, "Prometheus")


def _refuse_taken_ports(nodes: int) -> None:
    """The bench's ports are fixed: a leftover HAProxy (it binds with SO_REUSEPORT) or
    Prometheus of an interrupted run would silently share them and take part of the
    traffic or answer the controller's queries, so a taken port stops the run."""
    ports = [FRONTEND_PORT, PROMETHEUS_PORT, HAPROXY_METRICS_PORT]
    for node in range(nodes):
        ports += [replica_port(node), replica_metrics_port(node), exporter_port(node)]
    for port in ports:
        with socket.socket() as sock:
            # SO_REUSEADDR: connections of a finished run in TIME_WAIT do not count;
            # a listening socket still does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as err:
                raise RuntimeError(
                    f"port {port} is in use ({err.strerror}): a process of an earlier bench "
                    f"run? find it with `ss -ltnp 'sport = :{port}'` and stop it"
                ) from err


@contextmanager
def bench_cluster(state: Path, nodes: int = 3, monitoring: bool = True) -> Iterator[BenchCluster]:
    """ACS + sealed zoo (+ exporters and Prometheus); replicas/HAProxy are started by the bench."""
    _refuse_taken_ports(nodes)
    state.mkdir(parents=True, exist_ok=True)
    sup = Supervisor(state / "logs")
    with running_acs(state) as acs:
        register(acs, seal_zoo(state / "models", MODELS), model_server_mrenclave())
        creds = client_credentials(acs, "bench")
        tls = (creds.ca_pem, creds.key_pem, creds.cert_pem)
        try:
            if monitoring:
                _start_monitoring(sup, state, nodes)
            yield BenchCluster(state, nodes, acs, sup, tls)
        finally:
            sup.stop_all()
