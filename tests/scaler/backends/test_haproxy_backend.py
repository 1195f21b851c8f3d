"""The HAProxy backend against a real haproxy process and its admin socket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.scaler.backends.haproxy import HaproxyBackend, RuntimeApi
from services.scaler.controller.ports import BackendError, Replica, ScalingUnsupportedError
from tests.scaler.backends.haproxy_harness import DummyReplica, ask, haproxy

MODEL = "mobilenet_v1_int8"


class Launcher:
    """Starts dummy TCP replicas: the port the local cluster implements with real servers."""

    def __init__(self) -> None:
        self.running: dict[str, DummyReplica] = {}
        self.stopped: list[tuple[str, str, str]] = []

    def start(self, model: str, node: str) -> Replica:
        name = f"{node}-{model}-{len(self.running) + 1}"
        self.running[name] = DummyReplica(name).start()
        return Replica(name, self.running[name].address)

    def stop(self, model: str, node: str, name: str) -> None:
        self.running.pop(name).close()
        self.stopped.append((model, node, name))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[RuntimeApi, int, list[DummyReplica]]]:
    replicas = [DummyReplica(f"node-{i}-{MODEL}").start() for i in range(2)]
    with haproxy(tmp_path, MODEL, replicas) as (sock, frontend):
        api = RuntimeApi(sock)
        wait_healthy(HaproxyBackend(api), 2)
        yield api, frontend, replicas
    for r in replicas:
        r.close()


def wait_healthy(backend: HaproxyBackend, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(e.healthy for e in backend.endpoints()) < count:
        assert time.monotonic() < deadline, backend.endpoints()
        time.sleep(0.1)


def state(api: RuntimeApi) -> dict[str, int]:
    return {f"{s.backend}/{s.server}": s.weight for s in api.servers()}


def test_lists_endpoints_with_model_node_and_weight(
    cluster: tuple[RuntimeApi, int, list[DummyReplica]],
) -> None:
    api, _, replicas = cluster
    eps = HaproxyBackend(api).endpoints()
    assert [(e.id, e.model, e.node, e.weight, e.healthy) for e in eps] == [
        (f"{MODEL}_replicas/node-0-{MODEL}", MODEL, "node-0", 1, True),
        (f"{MODEL}_replicas/node-1-{MODEL}", MODEL, "node-1", 1, True),
    ]
    assert [e.address for e in eps] == [r.address for r in replicas]


def test_weight_zero_stops_traffic_and_one_restores_it(
    cluster: tuple[RuntimeApi, int, list[DummyReplica]],
) -> None:
    api, frontend, _ = cluster
    backend = HaproxyBackend(api)
    out = f"{MODEL}_replicas/node-0-{MODEL}"
    backend.set_weight(out, 0)
    assert state(api)[out] == 0
    assert {ask(frontend) for _ in range(8)} == {f"node-1-{MODEL}"}
    backend.set_weight(out, 1)
    assert state(api)[out] == 1
    assert {ask(frontend) for _ in range(8)} == {f"node-0-{MODEL}", f"node-1-{MODEL}"}


def test_unknown_server_and_bad_ids_are_backend_errors(
    cluster: tuple[RuntimeApi, int, list[DummyReplica]],
) -> None:
    backend = HaproxyBackend(cluster[0])
    with pytest.raises(BackendError, match="refused"):
        backend.set_weight(f"{MODEL}_replicas/nope", 0)
    with pytest.raises(BackendError, match="BACKEND/SERVER"):
        backend.set_weight("x/y weight 0; shutdown", 0)
    with pytest.raises(ScalingUnsupportedError):
        backend.scale_out(MODEL, "node-2")


def test_scale_out_adds_a_serving_server_and_scale_in_removes_it(
    cluster: tuple[RuntimeApi, int, list[DummyReplica]],
) -> None:
    api, frontend, _ = cluster
    launcher = Launcher()
    backend = HaproxyBackend(api, launcher)
    new_id = backend.scale_out(MODEL, "node-2")
    assert new_id == f"{MODEL}_replicas/node-2-{MODEL}-1"
    wait_healthy(backend, 3)
    assert next(e for e in backend.endpoints() if e.id == new_id).node == "node-2"
    assert f"node-2-{MODEL}-1" in {ask(frontend) for _ in range(9)}
    backend.scale_in(new_id)
    assert new_id not in state(api)
    assert launcher.stopped == [(MODEL, "node-2", f"node-2-{MODEL}-1")]
    assert f"node-2-{MODEL}-1" not in {ask(frontend) for _ in range(6)}


def test_scale_in_right_after_traffic_removes_the_server(
    cluster: tuple[RuntimeApi, int, list[DummyReplica]],
) -> None:
    """HAProxy ends a server's sessions asynchronously (those `shutdown sessions` kills and
    those its clients just closed), so a `del server` right after traffic can find them
    still attached; scale-in waits for them to go, every time."""
    api, frontend, _ = cluster
    launcher = Launcher()
    backend = HaproxyBackend(api, launcher)
    for i in range(1, 16):
        new_id = backend.scale_out(MODEL, "node-2")
        wait_healthy(backend, 3)
        for _ in range(6):
            ask(frontend)
        backend.scale_in(new_id)
        assert new_id not in state(api)
        assert len(launcher.stopped) == i


def test_dead_socket_is_a_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="socket"):
        HaproxyBackend(RuntimeApi(tmp_path / "missing.sock")).endpoints()
