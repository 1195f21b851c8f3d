"""Horizontal scaling: keep enough replicas in rotation for the SLO.

Target replicas of a model = max(desired, load demand), clamped to
[min, max]. When fewer endpoints serve than the target (Algorithm 1 took some
out, or load grew) a replica is added on the node with the most free EPC that
is not itself interfered; when more serve than the target for
`scale_in_intervals` intervals in a row (idle) one is removed, out-of-rotation
ones first. A per-model cooldown between changes keeps it from flapping.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from services.scaler.controller.state import Endpoint, ModelSlo, NodeEpc


@dataclass(frozen=True)
class ScalingPolicy:
    cooldown_s: float = 30.0
    scale_in_intervals: int = 6
    # EPC one replica needs on its node (enclave size); nodes with less free are skipped.
    replica_epc_bytes: int = 32 << 20
    # Requests/s one replica sustains within its SLO; 0 disables load-based scaling.
    replica_capacity_rps: float = 0.0
    recover_fraction: float = 0.5


@dataclass(frozen=True)
class ModelScaling:
    """Per-model scaling memory between intervals."""

    desired: int
    last_change: float = -math.inf
    surplus_intervals: int = 0


@dataclass(frozen=True)
class ScaleAction:
    kind: str  # scale_out | scale_in | hold
    model: str
    target: str  # node for scale_out, endpoint id for scale_in
    reason: str


def target_replicas(slo: ModelSlo, state: ModelScaling, rps: float, pol: ScalingPolicy) -> int:
    demand = math.ceil(rps / pol.replica_capacity_rps) if pol.replica_capacity_rps > 0 else 0
    return max(slo.min_replicas, min(slo.max_replicas, max(state.desired, demand)))


def pick_node(
    model: str,
    slo: ModelSlo,
    endpoints: Sequence[Endpoint],
    nodes: Mapping[str, NodeEpc],
    pol: ScalingPolicy,
) -> NodeEpc | None:
    """The fresh, calm node with the most free EPC, preferring nodes without this model."""
    hosting = {e.node for e in endpoints if e.model == model}
    fits = [
        n
        for n in nodes.values()
        if n.fresh
        and n.free_bytes >= pol.replica_epc_bytes
        and n.paging_mb_per_s < slo.threshold_mb_per_s * pol.recover_fraction
    ]
    return min(fits, key=lambda n: (n.node in hosting, -n.free_bytes, n.node), default=None)


def removal_order(mine: Sequence[Endpoint], nodes: Mapping[str, NodeEpc]) -> list[Endpoint]:
    """Unpinned endpoints, best to remove first: out of rotation, then most paging."""

    def worst(e: Endpoint) -> tuple[bool, float, str]:
        n = nodes.get(e.node)
        return (e.weight > 0, -(n.paging_mb_per_s if n else 0.0), e.id)

    return sorted((e for e in mine if not e.pinned), key=worst)


def _victim(mine: Sequence[Endpoint], nodes: Mapping[str, NodeEpc]) -> Endpoint | None:
    victim = next(iter(removal_order(mine, nodes)), None)
    serving_after = sum(1 for e in mine if e.weight > 0 and e is not victim)
    return victim if serving_after >= 1 else None


def plan(
    model: str,
    slo: ModelSlo,
    state: ModelScaling,
    endpoints: Sequence[Endpoint],
    nodes: Mapping[str, NodeEpc],
    rps: float,
    pol: ScalingPolicy,
    now: float,
) -> tuple[ModelScaling, ScaleAction | None]:
    """At most one scaling action for `model` this interval, and the updated memory."""
    mine = [e for e in endpoints if e.model == model]
    serving = sum(1 for e in mine if e.weight > 0 and e.healthy)
    target = target_replicas(slo, state, rps, pol)
    surplus = state.surplus_intervals + 1 if serving > target else 0
    state = ModelScaling(state.desired, state.last_change, surplus)
    cooling = now - state.last_change < pol.cooldown_s
    if serving < target and len(mine) < slo.max_replicas:
        if cooling:
            return state, None
        node = pick_node(model, slo, mine, nodes, pol)
        if node is None:
            return state, ScaleAction(
                "hold",
                model,
                model,
                f"{serving}/{target} replicas serving but no calm node has "
                f"{pol.replica_epc_bytes >> 20} MiB of free EPC",
            )
        return ModelScaling(state.desired, now, 0), ScaleAction(
            "scale_out",
            model,
            node.node,
            f"{serving}/{target} replicas serving ({rps:.1f} req/s); node {node.node} has "
            f"{node.free_bytes >> 20} MiB free EPC",
        )
    if surplus >= pol.scale_in_intervals and len(mine) > slo.min_replicas and not cooling:
        victim = _victim(mine, nodes)
        if victim is not None:
            return ModelScaling(state.desired, now, 0), ScaleAction(
                "scale_in",
                model,
                victim.id,
                f"{serving}/{target} replicas serving for {surplus} intervals "
                f"({rps:.1f} req/s); removing {victim.id}",
            )
    return state, None
