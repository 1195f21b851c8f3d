"""Algorithm 1 of S3ML: take endpoints on EPC-thrashing nodes out of rotation.

Per endpoint, `counter` counts consecutive intervals in which its node paged
more than the model's TH; after N such intervals (counter == N) the weight goes
to 0. The paper puts it back when the node runs no interfering enclave; we
require that too (the exporter's foreign-enclave count is 0) and M consecutive
intervals below TH*h (h < 1) — a hysteresis band, so a node hovering around TH
never flaps. A foreign enclave that stays but stopped paging (a quiet
co-tenant) must not exile the endpoint for ever: after `foreign_patience`
times M calm intervals it comes back anyway. Pinned endpoints are left
alone, endpoints on nodes without fresh metrics hold their state, and a model
never loses its last endpoint in rotation: the least-bad one stays in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from services.scaler.controller.state import Decision, Endpoint, ModelSlo, NodeEpc


@dataclass(frozen=True)
class Hysteresis:
    recover_intervals: int = 3  # M
    recover_fraction: float = 0.5  # h
    foreign_patience: int = 10  # with a foreign enclave still running: M * this calm intervals

    def __post_init__(self) -> None:
        if self.recover_intervals < 1 or not 0 < self.recover_fraction <= 1:
            raise ValueError("need recover_intervals >= 1 and 0 < recover_fraction <= 1")
        if self.foreign_patience < 1:
            raise ValueError("need foreign_patience >= 1")

    def calm_needed(self, node: NodeEpc) -> int:
        """Calm intervals before an endpoint returns: M, longer while interference runs."""
        if node.foreign_enclaves == 0:
            return self.recover_intervals
        return self.recover_intervals * self.foreign_patience


def _count(ep: Endpoint, node: NodeEpc, th: float, hyst: Hysteresis) -> Endpoint:
    over = node.paging_mb_per_s > th
    calm = node.paging_mb_per_s < th * hyst.recover_fraction
    return replace(ep, counter=ep.counter + 1 if over else 0, calm=ep.calm + 1 if calm else 0)


def _decide(ep: Endpoint, node: NodeEpc, slo: ModelSlo, hyst: Hysteresis) -> tuple[Endpoint, str]:
    """New weight of one endpoint and, when it changed, why."""
    if ep.weight > 0 and ep.counter >= slo.intervals_over_threshold:
        return replace(ep, weight=0, calm=0), (
            f"node {node.node} paged {node.paging_mb_per_s:.1f} MB/s > TH "
            f"{slo.threshold_mb_per_s:.1f} for {ep.counter} intervals (N="
            f"{slo.intervals_over_threshold}); out of rotation"
        )
    if ep.weight == 0 and ep.calm >= hyst.calm_needed(node):
        return replace(ep, weight=1, counter=0), (
            f"node {node.node} paged {node.paging_mb_per_s:.1f} MB/s < "
            f"{hyst.recover_fraction:g}*TH for {ep.calm} intervals "
            f"({node.foreign_enclaves} foreign enclaves); back in rotation"
        )
    return ep, ""


def _keep_one_in(
    before: Sequence[Endpoint], after: list[Endpoint], nodes: Mapping[str, NodeEpc], now: float
) -> list[Decision]:
    """If a model would have no healthy endpoint in rotation, put the least-bad one back."""
    decisions = []
    for model in sorted({e.model for e in after}):
        mine = [i for i, e in enumerate(after) if e.model == model]
        if any(after[i].weight > 0 and after[i].healthy for i in mine):
            continue
        candidates = [i for i in mine if not after[i].pinned]
        if not candidates:
            continue

        def badness(i: int) -> tuple[bool, float, bool, str]:
            n = nodes.get(after[i].node)
            paging = n.paging_mb_per_s if n and n.fresh else float("inf")
            return (not after[i].healthy, paging, before[i].weight == 0, after[i].id)

        keep = min(candidates, key=badness)
        if after[keep].weight > 0:  # nothing healthier to put back
            continue
        after[keep] = replace(after[keep], weight=1)
        decisions.append(
            Decision(
                now,
                "hold",
                after[keep].id,
                f"kept in rotation: every endpoint of {model} is interfered, "
                "this one is the least bad",
            )
        )
    return decisions


def step(
    endpoints: Sequence[Endpoint],
    nodes: Mapping[str, NodeEpc],
    slos: Mapping[str, ModelSlo],
    hyst: Hysteresis,
    now: float,
) -> tuple[list[Endpoint], list[Decision]]:
    """One monitoring interval: updated endpoints and the decisions that changed weights."""
    after: list[Endpoint] = []
    decisions: list[Decision] = []
    for ep in endpoints:
        node, slo = nodes.get(ep.node), slos.get(ep.model)
        if ep.pinned or slo is None or node is None or not node.fresh:
            after.append(ep)
            continue
        new, reason = _decide(_count(ep, node, slo.threshold_mb_per_s, hyst), node, slo, hyst)
        if reason:
            decisions.append(Decision(now, "weight", ep.id, f"weight {new.weight}: {reason}"))
        after.append(new)
    kept = _keep_one_in(endpoints, after, nodes, now)
    final = {e.id: e.weight for e in after}
    unchanged = {e.id for e in endpoints if final[e.id] == e.weight}
    return after, [d for d in decisions if d.target not in unchanged] + kept
