"""Model-server replicas on emulated nodes: how one is started, and the scaler's launcher.

`make up` starts one replica per model per node; the EPC-aware controller
adds and removes more through `LocalLauncher` (its ReplicaLauncher port), with
the same command line, so a scaled-out replica attests and accounts its EPC
exactly like the first ones.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

from deploy.local.cluster import Cluster, Replica, service_name
from deploy.local.supervisor import StartError, Supervisor
from services.loopback import ports as loopback
from services.scaler.controller.ports import BackendError
from services.scaler.controller.ports import Replica as Started


@dataclass(frozen=True)
class ReplicaContext:
    """What every replica's command line needs besides its own name and ports."""

    cluster: Cluster
    state: Path
    binary: Path
    acs_mrenclave: str

    def argv(self, replica: Replica, name: str) -> list[str]:
        node = f"node-{replica.node}"
        return [
            str(self.binary), "--service", service_name(replica.model), "--model", replica.model,
            "--models-dir", str(self.state / "models"), "--listen", f"127.0.0.1:{replica.port}",
            "--acs", f"127.0.0.1:{self.cluster.acs_port}", "--acs-mrenclave", self.acs_mrenclave,
            "--sim-dir", str(self.state / "sim"), "--node", node, "--replica", name,
            "--pool", str(self.cluster.pool), "--threads", str(self.cluster.threads),
            "--epc-pool", str(self.state / "epc" / f"{node}.pool"),
            "--metrics-listen", f"127.0.0.1:{replica.metrics_port}",
            *self.cluster.trace_flags(self.state, name),
        ]  # fmt: skip


class LocalLauncher:
    """Starts and stops extra replicas as supervised processes (the controller's scale-out)."""

    def __init__(self, context: ReplicaContext, sup: Supervisor) -> None:
        self._context, self._sup = context, sup
        self._serial = itertools.count(1)
        self._lock = threading.Lock()

    def start(self, model: str, node: str) -> Started:
        try:
            index = int(node.removeprefix("node-"))
        except ValueError as err:
            raise BackendError(f"no emulated node named {node!r}") from err
        if (
            not 0 <= index < self._context.cluster.nodes
            or model not in self._context.cluster.models
        ):
            raise BackendError(f"cannot place {model!r} on {node!r}: not in this cluster")
        with self._lock:
            name = f"{node}-{model}-s{next(self._serial)}"
        replica = Replica(index, model, loopback.kernel_port(), loopback.kernel_port())
        try:
            self._sup.start(name, self._context.argv(replica, name))
        except StartError as err:
            raise BackendError(str(err)) from err
        return Started(name, f"127.0.0.1:{replica.port}")

    def stop(self, model: str, node: str, name: str) -> None:
        self._sup.stop_one(name)
