"""Horizontal scaling decisions on the pure planner (no I/O)."""

from __future__ import annotations

from services.scaler.controller.scaling import ModelScaling, ScalingPolicy, plan
from services.scaler.controller.state import Endpoint, ModelSlo, NodeEpc

MIB = 1 << 20
SLO = ModelSlo("m", 100.0, threshold_mb_per_s=50.0, min_replicas=1, max_replicas=4)
POL = ScalingPolicy(cooldown_s=10.0, scale_in_intervals=3, replica_epc_bytes=20 * MIB)


def node(name: str, paging: float = 0.0, used_mib: int = 0) -> NodeEpc:
    return NodeEpc(
        name, epc_bytes=int(93.5 * MIB), pages_in_use=used_mib * 256, paging_mb_per_s=paging
    )


def test_scales_out_onto_the_calm_node_with_most_free_epc() -> None:
    eps = [Endpoint("a", "m", "n0", "", weight=0), Endpoint("b", "m", "n1", "")]
    nodes = {"n0": node("n0", 300.0), "n1": node("n1", used_mib=50), "n2": node("n2", used_mib=10)}
    st, action = plan("m", SLO, ModelScaling(2), eps, nodes, 0.0, POL, now=100.0)
    assert action is not None
    assert (action.kind, action.target) == ("scale_out", "n2")
    assert st.last_change == 100.0
    _, again = plan("m", SLO, st, eps, nodes, 0.0, POL, now=105.0)
    assert again is None, "cooldown must stop a second scale-out"


def test_no_free_epc_is_a_hold_with_a_reason() -> None:
    eps = [Endpoint("a", "m", "n0", "", weight=0), Endpoint("b", "m", "n1", "")]
    nodes = {"n0": node("n0", 300.0), "n1": node("n1", used_mib=80)}
    _, action = plan("m", SLO, ModelScaling(2), eps, nodes, 0.0, POL, now=100.0)
    assert action is not None
    assert action.kind == "hold"
    assert "free EPC" in action.reason


def test_load_growth_scales_out_within_max() -> None:
    pol = ScalingPolicy(replica_capacity_rps=10.0, replica_epc_bytes=MIB)
    eps = [Endpoint(f"e{i}", "m", f"n{i}", "") for i in range(4)]
    nodes = {f"n{i}": node(f"n{i}") for i in range(5)}
    _, action = plan("m", SLO, ModelScaling(1), eps[:2], nodes, 35.0, pol, now=0.0)
    assert action is not None
    assert action.kind == "scale_out"
    _, capped = plan("m", SLO, ModelScaling(1), eps, nodes, 1000.0, pol, now=0.0)
    assert capped is None


def test_scale_in_only_after_sustained_surplus_and_never_the_last() -> None:
    eps = [
        Endpoint("a", "m", "n0", ""),
        Endpoint("b", "m", "n1", "", weight=0),
        Endpoint("c", "m", "n2", ""),
    ]
    nodes = {n: node(n) for n in ("n0", "n1", "n2")}
    st = ModelScaling(1)
    actions = []
    for t in range(3):
        st, action = plan("m", SLO, st, eps, nodes, 0.0, POL, now=100.0 + t)
        actions.append(action)
    assert actions[:2] == [None, None]
    assert actions[2] is not None
    assert (actions[2].kind, actions[2].target) == ("scale_in", "b")
    with_pin = [Endpoint("p", "m", "n0", "", pinned=True), Endpoint("a", "m", "n1", "")]
    st, picked = ModelScaling(1), None
    for t in range(3):
        st, picked = plan("m", SLO, st, with_pin, nodes, 0.0, POL, now=200.0 + t)
    assert picked is not None, "a pinned endpoint is never removed"
    assert picked.target == "a", "a pinned endpoint is never removed"
    only_pinned_serving = [Endpoint("p", "m", "n0", "", pinned=True), Endpoint("a", "m", "n1", "")]
    single = [only_pinned_serving[1]]
    st = ModelScaling(1)
    for t in range(5):
        st, none = plan("m", SLO, st, single, nodes, 0.0, POL, now=300.0 + t)
        assert none is None, "the last endpoint of a model is never removed"
