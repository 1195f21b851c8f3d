"""The control loop's scaling, cooldown and failure handling, with a real HAProxy
carrying the result; node EPC comes from a settable snapshot (the Prometheus
path is covered by test_controller_prometheus.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller.balancing import Hysteresis
from services.scaler.controller.controller import Controller, ControllerConfig
from services.scaler.controller.ports import Replica
from services.scaler.controller.prometheus import MetricsUnavailableError, Snapshot
from services.scaler.controller.scaling import ScalingPolicy
from services.scaler.controller.state import ModelSlo, NodeEpc
from tests.scaler.backends.haproxy_harness import DummyReplica, haproxy

MODEL = "mobilenet_v1_int8"
MIB = 1 << 20
NODES = ("node-0", "node-1", "node-2", "node-3")


class Metrics:
    """Settable node paging; `down` makes Prometheus unreachable."""

    def __init__(self) -> None:
        self.paging = dict.fromkeys(NODES, 0.0)
        self.down = False

    def read(self) -> Snapshot:
        if self.down:
            raise MetricsUnavailableError("connection refused")
        nodes = {n: NodeEpc(n, int(93.5 * MIB), 2560, p) for n, p in self.paging.items()}
        return Snapshot(nodes, {})


class Launcher:
    def __init__(self) -> None:
        self.started: list[DummyReplica] = []
        self.stopped: list[str] = []

    def start(self, model: str, node: str) -> Replica:
        self.started.append(DummyReplica(f"{node}-{model}-s{len(self.started)}").start())
        return Replica(self.started[-1].name, self.started[-1].address)

    def stop(self, model: str, node: str, name: str) -> None:
        self.stopped.append(name)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    controller: Controller
    api: RuntimeApi
    metrics: Metrics
    launcher: Launcher
    clock: Clock

    def tick(self, n: int = 1, step_s: float = 5.0) -> None:
        for _ in range(n):
            self.clock.now += step_s
            self.controller.tick()

    def servers(self) -> dict[str, int]:
        return {s.server: s.weight for s in self.api.servers()}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    replicas = [DummyReplica(f"node-{i}-{MODEL}").start() for i in range(3)]
    metrics, launcher, clock = Metrics(), Launcher(), Clock()
    config = ControllerConfig(
        Hysteresis(recover_intervals=2, recover_fraction=0.5),
        ScalingPolicy(cooldown_s=30.0, scale_in_intervals=3, replica_epc_bytes=32 * MIB),
    )
    slo = ModelSlo(MODEL, 100.0, 50.0, intervals_over_threshold=2, max_replicas=4)
    with haproxy(tmp_path, MODEL, replicas) as (sock, _):
        api = RuntimeApi(sock)
        backend = HaproxyBackend(api, launcher)
        yield Rig(
            Controller(backend, metrics, {MODEL: slo}, config, clock), api, metrics, launcher, clock
        )
    for r in replicas + launcher.started:
        r.close()


def test_lost_capacity_is_replaced_on_a_free_node_then_removed_after_recovery(rig: Rig) -> None:
    rig.tick()
    rig.metrics.paging["node-1"] = 200.0
    rig.tick(2)
    servers = rig.servers()
    assert servers[f"node-1-{MODEL}"] == 0
    assert servers[f"node-3-{MODEL}-s0"] == 1, "replacement goes to the node without the model"
    actions = [d.action for d in rig.controller.status().decisions]
    assert actions == ["weight", "scale_out"]
    rig.tick(3)
    assert len(rig.servers()) == 4, "no second scale-out: capacity is back"
    rig.metrics.paging["node-1"] = 0.0
    rig.tick(2)
    assert rig.servers()[f"node-1-{MODEL}"] == 1
    rig.tick(3)
    assert len(rig.servers()) == 3, "surplus removed after scale_in_intervals"
    assert len(rig.launcher.stopped) == 1
    final = rig.controller.status().decisions[-1]
    assert final.action == "scale_in"
    assert "4/3 replicas serving" in final.reason


def test_cooldown_limits_scale_outs(rig: Rig) -> None:
    rig.controller.set_slo(ModelSlo(MODEL, 100.0, 50.0, intervals_over_threshold=2, max_replicas=5))
    rig.tick()
    rig.metrics.paging["node-0"] = 200.0
    rig.metrics.paging["node-1"] = 200.0
    rig.tick(2, step_s=1.0)
    assert len(rig.launcher.started) == 1, "one scale-out inside the cooldown"
    rig.tick(1, step_s=30.0)
    assert len(rig.launcher.started) == 2
    rig.tick(5, step_s=60.0)
    assert len(rig.launcher.started) == 2, "max_replicas caps further scale-outs"


def test_blind_controller_holds_weights_and_replicas(rig: Rig) -> None:
    rig.tick()
    rig.metrics.paging["node-2"] = 200.0
    rig.tick(2)
    before = rig.servers()
    rig.metrics.down = True
    rig.metrics.paging["node-2"] = 0.0
    rig.tick(10, step_s=60.0)
    assert rig.servers() == before
    status = rig.controller.status()
    assert status.blind
    assert [d.action for d in status.decisions].count("blind") == 1
    rig.metrics.down = False
    rig.tick(2)
    assert rig.servers()[f"node-2-{MODEL}"] == 1
    assert not rig.controller.status().blind


def test_backend_failure_is_a_hold_not_a_crash(rig: Rig, tmp_path: Path) -> None:
    rig.tick()
    rig.controller._backend = HaproxyBackend(RuntimeApi(tmp_path / "gone.sock"))
    rig.tick(3)
    holds = [d for d in rig.controller.status().decisions if d.action == "hold"]
    assert len(holds) == 1, "a repeated hold is recorded once"
    assert "gone.sock" in holds[0].reason
