"""Algorithm 1 edge cases on the pure balancing step (no I/O)."""

from __future__ import annotations

import math

from services.scaler.controller.balancing import Hysteresis, step
from services.scaler.controller.state import Endpoint, ModelSlo, NodeEpc

SLO = {"m": ModelSlo("m", 100.0, threshold_mb_per_s=50.0, intervals_over_threshold=3)}
HYST = Hysteresis(recover_intervals=2, recover_fraction=0.5)


def endpoints(n: int = 3) -> list[Endpoint]:
    return [Endpoint(f"node-{i}/m", "m", f"node-{i}", f"127.0.0.1:{9000 + i}") for i in range(n)]


def nodes(*paging: float, fresh: bool = True, foreign: int = 0) -> dict[str, NodeEpc]:
    return {
        f"node-{i}": NodeEpc(f"node-{i}", paging_mb_per_s=p, fresh=fresh, foreign_enclaves=foreign)
        for i, p in enumerate(paging)
    }


def run(eps: list[Endpoint], *rounds: dict[str, NodeEpc]) -> list[Endpoint]:
    for t, ns in enumerate(rounds):
        eps, _ = step(eps, ns, SLO, HYST, float(t))
    return eps


def weights(eps: list[Endpoint]) -> list[int]:
    return [e.weight for e in eps]


def test_out_after_exactly_n_intervals_not_before() -> None:
    hot = nodes(80.0, 0.0, 0.0)
    assert weights(run(endpoints(), hot, hot)) == [1, 1, 1]
    after = run(endpoints(), hot, hot, hot)
    assert weights(after) == [0, 1, 1]
    assert after[0].counter == 3


def test_threshold_is_strict_and_counter_resets_on_a_calm_interval() -> None:
    at_th, hot, calm = nodes(50.0, 0, 0), nodes(51.0, 0, 0), nodes(10.0, 0, 0)
    assert weights(run(endpoints(), at_th, at_th, at_th, at_th)) == [1, 1, 1]
    flapping = run(endpoints(), hot, hot, calm, hot, hot, calm, hot, hot)
    assert weights(flapping) == [1, 1, 1]
    assert flapping[0].counter == 2


def test_recovery_needs_m_intervals_below_th_times_h() -> None:
    hot = nodes(80.0, 0, 0)
    out = run(endpoints(), hot, hot, hot)
    between = nodes(40.0, 0, 0)  # below TH, above TH*h: not calm enough
    assert weights(run(out, between, between, between)) == [0, 1, 1]
    calm = nodes(10.0, 0, 0)
    assert weights(run(out, calm)) == [0, 1, 1]
    back = run(out, calm, calm)
    assert weights(back) == [1, 1, 1]
    assert back[0].counter == 0


def test_hovering_around_threshold_never_flaps() -> None:
    eps = run(endpoints(), *[nodes(80.0, 0, 0)] * 3)
    seq = [nodes(v, 0, 0) for v in (45.0, 55.0, 30.0, 60.0, 49.0, 51.0) * 3]
    changes, last = 0, eps[0].weight
    for t, ns in enumerate(seq):
        eps, _ = step(eps, ns, SLO, HYST, float(t))
        changes += eps[0].weight != last
        last = eps[0].weight
    assert changes == 0
    assert last == 0


def test_all_nodes_interfered_keeps_the_least_bad_endpoint_in() -> None:
    hot = nodes(300.0, 90.0, 200.0)
    eps, decisions = endpoints(), []
    for t in range(5):
        eps, d = step(eps, hot, SLO, HYST, float(t))
        decisions += d
    assert weights(eps) == [0, 1, 0]
    assert any(d.action == "hold" and d.target == "node-1/m" for d in decisions)
    assert not any(d.action == "weight" and d.target == "node-1/m" for d in decisions)


def test_keep_one_in_prefers_a_healthy_endpoint() -> None:
    eps = endpoints()
    eps[1] = Endpoint("node-1/m", "m", "node-1", "b", healthy=False)
    hot = nodes(300.0, 90.0, 200.0)
    assert weights(run(eps, *[hot] * 5)) == [0, 0, 1]


def test_nan_or_stale_node_holds_its_state() -> None:
    out = run(endpoints(), *[nodes(80.0, 0, 0)] * 3)
    stale = {**nodes(0, 0, 0), "node-0": NodeEpc("node-0", paging_mb_per_s=math.nan, fresh=False)}
    held = run(out, stale, stale, stale)
    assert weights(held) == [0, 1, 1]
    assert held[0].counter == out[0].counter
    fresh_but_missing = run(endpoints(), *[nodes(80.0, 0, 0)] * 2, {"node-1": NodeEpc("node-1")})
    assert fresh_but_missing[0].counter == 2
    assert fresh_but_missing[0].weight == 1


def test_pinned_endpoint_is_left_alone() -> None:
    eps = endpoints()
    eps[0] = Endpoint("node-0/m", "m", "node-0", "a", weight=1, pinned=True)
    assert weights(run(eps, *[nodes(500.0, 0, 0)] * 6)) == [1, 1, 1]
    eps[1] = Endpoint("node-1/m", "m", "node-1", "b", weight=0, pinned=True)
    assert weights(run(eps, *[nodes(0, 0, 0)] * 6)) == [1, 0, 1]


def test_unknown_model_is_not_touched() -> None:
    eps = [Endpoint("x", "other", "node-0", "a")]
    assert weights(run(eps, *[nodes(500.0)] * 5)) == [1]


def test_decisions_carry_reasons() -> None:
    eps, decisions = endpoints(), []
    for t, ns in enumerate([nodes(80.0, 0, 0)] * 3 + [nodes(0, 0, 0)] * 2):
        eps, d = step(eps, ns, SLO, HYST, float(t))
        decisions += d
    assert [(d.action, d.target) for d in decisions] == [("weight", "node-0/m")] * 2
    assert "80.0 MB/s > TH 50.0" in decisions[0].reason
    assert "back in rotation" in decisions[1].reason


def test_no_return_while_a_foreign_enclave_runs_unless_it_stays_quiet_long() -> None:
    """The paper's rule: back when the node runs no interfering enclave."""
    out = run(endpoints(), *[nodes(80.0, 0, 0, foreign=1)] * 3)
    calm_but_stressor_alive = nodes(10.0, 0, 0, foreign=1)
    held = run(out, *[calm_but_stressor_alive] * (HYST.recover_intervals * 3))
    assert weights(held) == [0, 1, 1]
    assert weights(run(held, nodes(10.0, 0, 0, foreign=0))) == [1, 1, 1]
    patience = HYST.recover_intervals * HYST.foreign_patience
    assert weights(run(out, *[calm_but_stressor_alive] * (patience - 1))) == [0, 1, 1]
    assert weights(run(out, *[calm_but_stressor_alive] * patience)) == [1, 1, 1]
