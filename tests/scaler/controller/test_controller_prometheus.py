"""The controller end to end: a real Prometheus scraping a driven EPC exporter,
Algorithm 1 deciding, and a real HAProxy carrying the weights; plus blindness."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller.balancing import Hysteresis
from services.scaler.controller.controller import Controller, ControllerConfig
from services.scaler.controller.prometheus import MetricsUnavailableError, PrometheusSource
from services.scaler.controller.state import ModelSlo
from tests.scaler.backends.haproxy_harness import DummyReplica, haproxy
from tests.scaler.controller.prom_harness import Exporter, prometheus, wait_for

MODEL = "mobilenet_v1_int8"
NODES = ["node-0", "node-1", "node-2"]
SLO = ModelSlo(MODEL, 100.0, threshold_mb_per_s=20.0, intervals_over_threshold=2)
CONFIG = ControllerConfig(Hysteresis(recover_intervals=2, recover_fraction=0.5), autoscale=False)


class Rig:
    def __init__(self, exporter: Exporter, prom_url: str, api: RuntimeApi) -> None:
        self.exporter, self.prom_url, self.api = exporter, prom_url, api
        self.source = PrometheusSource(prom_url, window="3s", stale_after_s=3.0)
        self.controller = Controller(HaproxyBackend(api), self.source, {MODEL: SLO}, CONFIG)

    def weights(self) -> dict[str, int]:
        return {s.server.split("-")[1]: s.weight for s in self.api.servers()}

    def tick_until(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        def ticked() -> bool:
            self.controller.tick()
            time.sleep(0.5)
            return check()

        wait_for(ticked, timeout_s, what)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    exporter = Exporter(NODES)
    replicas = [DummyReplica(f"{n}-{MODEL}").start() for n in NODES]
    (tmp_path / "lb").mkdir()
    with (
        prometheus(tmp_path, exporter.port) as url,
        haproxy(tmp_path / "lb", MODEL, replicas) as (sock, _),
    ):
        rig = Rig(exporter, url, RuntimeApi(sock))
        wait_for(lambda: all(n.fresh for n in rig.source.read().nodes.values()), 30, "rates")
        yield rig
    exporter.close()
    for r in replicas:
        r.close()


def blind_gauge() -> float:
    value = REGISTRY.get_sample_value("s3ml_scaler_blind")
    assert value is not None
    return value


def test_interference_takes_the_node_out_and_recovery_brings_it_back(rig: Rig) -> None:
    snap = rig.source.read()
    assert sorted(snap.nodes) == NODES
    assert all(n.fresh for n in snap.nodes.values())
    assert snap.nodes["node-1"].free_bytes == int(93.5 * (1 << 20)) - 2560 * 4096
    rig.exporter.interfere("node-1", 60.0)
    rig.exporter.load(MODEL, 20.0)
    rig.tick_until(lambda: rig.weights() == {"0": 1, "1": 0, "2": 1}, 30, "node-1 out of rotation")
    status = rig.controller.status()
    assert not status.blind
    node1 = next(n for n in status.nodes if n.node == "node-1")
    assert 30.0 < node1.paging_mb_per_s < 90.0
    assert node1.foreign_enclaves == 1
    out = [d for d in status.decisions if d.action == "weight"]
    assert len(out) == 1
    assert "node-1" in out[0].target
    assert "out of rotation" in out[0].reason
    assert 10.0 < rig.source.read().requests_per_s[MODEL] < 30.0
    rig.exporter.interfere("node-1", 0.0)
    rig.tick_until(lambda: rig.weights() == {"0": 1, "1": 1, "2": 1}, 30, "node-1 back")
    assert "back in rotation" in rig.controller.status().decisions[-1].reason


def test_all_nodes_interfered_leaves_one_in_rotation(rig: Rig) -> None:
    for node, rate in zip(NODES, (80.0, 40.0, 120.0), strict=True):
        rig.exporter.interfere(node, rate)
    rig.tick_until(lambda: rig.weights() == {"0": 0, "1": 1, "2": 0}, 30, "only node-1 in")
    for _ in range(4):
        rig.controller.tick()
        assert rig.weights() == {"0": 0, "1": 1, "2": 0}


def test_prometheus_down_makes_it_blind_and_holds_weights(rig: Rig, tmp_path: Path) -> None:
    rig.exporter.interfere("node-0", 60.0)
    rig.tick_until(lambda: rig.weights()["0"] == 0, 30, "node-0 out")
    dead = PrometheusSource("http://127.0.0.1:1", timeout_s=0.5)
    with pytest.raises(MetricsUnavailableError):
        dead.read()
    rig.controller._source = dead
    rig.exporter.interfere("node-0", 0.0)
    for _ in range(5):
        rig.controller.tick()
    assert rig.weights() == {"0": 0, "1": 1, "2": 1}
    status = rig.controller.status()
    assert status.blind
    assert blind_gauge() == 1.0
    assert [d.action for d in status.decisions].count("blind") == 1
    rig.controller._source = rig.source
    rig.tick_until(lambda: rig.weights()["0"] == 1, 30, "node-0 back after sight returns")
    assert not rig.controller.status().blind
    assert blind_gauge() == 0.0


def test_missing_and_nan_metrics_hold(rig: Rig) -> None:
    rig.exporter.interfere("node-2", 60.0)
    rig.tick_until(lambda: rig.weights()["2"] == 0, 30, "node-2 out")
    rig.exporter.size.labels("node-2").set(float("nan"))
    rig.exporter.interfere("node-2", 0.0)
    time.sleep(4)
    for _ in range(4):
        rig.controller.tick()
    node2 = next(n for n in rig.controller.status().nodes if n.node == "node-2")
    assert not node2.fresh, "NaN node must hold, not recover"
    assert rig.weights()["2"] == 0, "NaN node must hold, not recover"
    for node in NODES:
        rig.exporter.size.remove(node)
        rig.exporter.in_use.remove(node)
    time.sleep(2)
    rig.controller.tick()
    assert rig.controller.status().blind, "no fresh node at all is blindness"
    assert rig.weights() == {"0": 1, "1": 1, "2": 0}
