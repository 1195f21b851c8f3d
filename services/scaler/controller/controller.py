"""The control loop: metrics -> Algorithm 1 -> scaling -> backend, with blind safety.

`tick()` is one monitoring interval and is what tests and benches call directly;
`run()` repeats it on a thread. When Prometheus is down or no node has fresh
metrics the controller is *blind*: it changes no weight and no replica count,
sets the `s3ml_scaler_blind` gauge and says so in its status and decisions.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from prometheus_client import Gauge

from services.scaler.controller import balancing, scaling
from services.scaler.controller.errors import (
    LastEndpointError,
    NoCapacityError,
    UnknownEndpointError,
    UnknownModelError,
)
from services.scaler.controller.ports import Backend, BackendError
from services.scaler.controller.prometheus import MetricsUnavailableError, Snapshot
from services.scaler.controller.state import MAX_WEIGHT, Decision, Endpoint, ModelSlo, NodeEpc

log = logging.getLogger(__name__)
BLIND = Gauge("s3ml_scaler_blind", "1 while the scaler cannot see EPC metrics and holds weights")
WEIGHT = Gauge("s3ml_scaler_endpoint_weight", "Weight the scaler set", ["endpoint", "model"])
MAX_DECISIONS = 1000


class MetricsSource(Protocol):
    def read(self) -> Snapshot: ...


@dataclass(frozen=True)
class ControllerConfig:
    hysteresis: balancing.Hysteresis = field(default_factory=balancing.Hysteresis)
    scaling: scaling.ScalingPolicy = field(default_factory=scaling.ScalingPolicy)
    interval_s: float = 5.0
    autoscale: bool = True


@dataclass(frozen=True)
class Status:
    nodes: tuple[NodeEpc, ...]
    endpoints: tuple[Endpoint, ...]
    slos: tuple[ModelSlo, ...]
    decisions: tuple[Decision, ...]
    blind: bool
    backend: str


class Controller:
    def __init__(
        self,
        backend: Backend,
        source: MetricsSource,
        slos: Mapping[str, ModelSlo],
        config: ControllerConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._backend, self._source, self._clock = backend, source, clock
        self._config = config or ControllerConfig()
        self._slos = dict(slos)
        self._lock = threading.RLock()
        self._endpoints: dict[str, Endpoint] = {}
        self._nodes: dict[str, NodeEpc] = {}
        self._scaling: dict[str, scaling.ModelScaling] = {}
        self._decisions: collections.deque[Decision] = collections.deque(maxlen=MAX_DECISIONS)
        self._blind = False
        self._last_reason: dict[str, str] = {}  # per target, so a hold is logged once
        self._stop = threading.Event()

    # --- the loop -------------------------------------------------------

    def tick(self) -> list[Decision]:
        """One monitoring interval; the decisions it took."""
        with self._lock:
            now = self._clock()
            try:
                live = self._backend.endpoints()
            except BackendError as err:
                return self._record([Decision(now, "hold", self._backend.name, f"backend: {err}")])
            self._merge(live)
            try:
                snap = self._source.read()
            except MetricsUnavailableError as err:
                return self._go_blind(now, str(err))
            hosting = {e.node for e in self._endpoints.values()}
            nodes = {n: snap.nodes.get(n, NodeEpc(n, fresh=False)) for n in hosting}
            nodes.update({n: s for n, s in snap.nodes.items() if n not in nodes})
            self._nodes = nodes
            if hosting and not any(nodes[n].fresh for n in hosting):
                return self._go_blind(now, "no node hosting a replica has fresh EPC metrics")
            decisions = []
            if self._blind:
                decisions.append(Decision(now, "blind", "metrics", "metrics are back; controlling"))
            self._blind = False
            BLIND.set(0)
            decisions += self._balance(now)
            if self._config.autoscale:
                decisions += self._autoscale(now, snap.requests_per_s)
            return self._record(decisions)

    def run(self) -> None:
        while not self._stop.wait(self._config.interval_s):
            try:
                self.tick()
            except Exception:  # the loop must outlive any one bad interval
                log.exception("control interval failed; holding")

    def stop(self) -> None:
        self._stop.set()

    def _merge(self, live: Sequence[Endpoint]) -> None:
        """Backend truth (weight, health, membership) joined with our counters and pins."""
        merged = {}
        for ep in live:
            old = self._endpoints.get(ep.id)
            if old is None:
                merged[ep.id] = ep
                self._scaling.setdefault(ep.model, scaling.ModelScaling(desired=0))
            else:
                keep = old.weight if old.pinned else ep.weight
                merged[ep.id] = replace(old, address=ep.address, healthy=ep.healthy, weight=keep)
        self._endpoints = merged
        for model, st in self._scaling.items():
            if st.desired == 0:
                count = sum(1 for e in merged.values() if e.model == model)
                self._scaling[model] = replace(st, desired=max(1, count))

    def _go_blind(self, now: float, why: str) -> list[Decision]:
        BLIND.set(1)
        if self._blind:
            return []
        self._blind = True
        log.warning("blind: %s; holding the last weights", why)
        return self._record([Decision(now, "blind", "metrics", f"{why}; holding the last weights")])

    def _balance(self, now: float) -> list[Decision]:
        before = list(self._endpoints.values())
        after, decisions = balancing.step(
            before, self._nodes, self._slos, self._config.hysteresis, now
        )
        for old, proposed in zip(before, after, strict=True):
            new = proposed
            if new.weight != old.weight:
                try:
                    self._backend.set_weight(new.id, new.weight)
                except BackendError as err:
                    decisions.append(
                        Decision(now, "hold", new.id, f"backend refused weight: {err}")
                    )
                    new = replace(new, weight=old.weight)
            self._endpoints[new.id] = new
            WEIGHT.labels(new.id, new.model).set(new.weight)
        return decisions

    def _autoscale(self, now: float, rps: Mapping[str, float]) -> list[Decision]:
        decisions = []
        eps = list(self._endpoints.values())
        for model, memory in sorted(self._scaling.items()):
            slo = self._slos.get(model)
            if slo is None:
                continue
            self._scaling[model], action = scaling.plan(
                model, slo, memory, eps, self._nodes, rps.get(model, 0.0), self._config.scaling, now
            )
            if action is not None:
                decisions.append(self._apply(action, now))
        return decisions

    def _apply(self, action: scaling.ScaleAction, now: float) -> Decision:
        try:
            if action.kind == "scale_out":
                new_id = self._backend.scale_out(action.model, action.target)
                return Decision(now, "scale_out", new_id, action.reason)
            if action.kind == "scale_in":
                self._backend.scale_in(action.target)
                self._endpoints.pop(action.target, None)
        except BackendError as err:
            return Decision(now, "hold", action.target, f"{action.reason}; backend failed: {err}")
        return Decision(now, action.kind, action.target, action.reason)

    def _record(self, decisions: list[Decision]) -> list[Decision]:
        """Keeps and logs decisions; a hold repeating the target's last reason is dropped."""
        kept = []
        for d in decisions:
            if d.action == "hold" and self._last_reason.get(d.target) == d.reason:
                continue
            self._last_reason[d.target] = d.reason
            log.info("%s %s: %s", d.action, d.target, d.reason)
            kept.append(d)
        self._decisions.extend(kept)
        return kept

    # --- operator API ---------------------------------------------------

    def status(self, decisions: int = 50) -> Status:
        with self._lock:
            recent = list(self._decisions)[-decisions:] if decisions > 0 else []
            return Status(
                nodes=tuple(self._nodes[n] for n in sorted(self._nodes)),
                endpoints=tuple(self._endpoints[i] for i in sorted(self._endpoints)),
                slos=tuple(self._slos[m] for m in sorted(self._slos)),
                decisions=tuple(recent),
                blind=self._blind,
                backend=self._backend.name,
            )

    def set_slo(self, slo: ModelSlo) -> ModelSlo:
        with self._lock:
            self._slos[slo.model] = slo
            self._record([Decision(self._clock(), "hold", slo.model, f"SLO set: {slo}")])
            return slo

    def pin(self, endpoint_id: str, weight: int) -> Endpoint:
        if not 0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"weight must be 0..{MAX_WEIGHT}, got {weight}")
        with self._lock:
            ep = self._endpoint(endpoint_id)
            others = [e for e in self._endpoints.values() if e.model == ep.model and e.id != ep.id]
            if weight == 0 and not any(e.weight > 0 for e in others):
                raise LastEndpointError(
                    f"pinning {endpoint_id} to 0 would leave {ep.model} with no endpoint in "
                    "rotation; scale out first"
                )
            self._backend.set_weight(ep.id, weight)
            return self._replace(ep, weight=weight, pinned=True, reason=f"pinned to {weight}")

    def release(self, endpoint_id: str) -> Endpoint:
        with self._lock:
            ep = self._endpoint(endpoint_id)
            return self._replace(ep, pinned=False, reason="pin released")

    def scale(self, model: str, replicas: int) -> list[Endpoint]:
        """Sets the model's desired replica count and adds/removes replicas to reach it now."""
        with self._lock:
            slo = self._slos.get(model)
            if slo is None:
                raise UnknownModelError(
                    f"no model {model!r}; known: {', '.join(sorted(self._slos))}"
                )
            if not slo.min_replicas <= replicas <= slo.max_replicas:
                raise ValueError(
                    f"{model}: replicas must be within {slo.min_replicas}..{slo.max_replicas}"
                )
            now = self._clock()
            self._scaling[model] = scaling.ModelScaling(replicas, now)
            self._merge(self._backend.endpoints())
            mine = [e for e in self._endpoints.values() if e.model == model]
            for _ in range(replicas - len(mine)):
                node = scaling.pick_node(model, slo, mine, self._nodes, self._config.scaling)
                if node is None:
                    raise NoCapacityError(f"{model}: no calm node has free EPC for a replica")
                new_id = self._backend.scale_out(model, node.node)
                self._record([Decision(now, "scale_out", new_id, f"operator: {replicas} replicas")])
                mine.append(Endpoint(new_id, model, node.node, ""))
            victims = scaling.removal_order(mine, self._nodes)[: max(0, len(mine) - replicas)]
            if len(victims) < len(mine) - replicas:
                raise ValueError(f"{model}: pinned endpoints cannot be removed; release them first")
            if mine and not any(e.weight > 0 for e in mine if e not in victims):
                raise LastEndpointError(f"{model}: that would leave no endpoint in rotation")
            for victim in victims:
                self._backend.scale_in(victim.id)
                self._record(
                    [Decision(now, "scale_in", victim.id, f"operator: {replicas} replicas")]
                )
            self._merge(self._backend.endpoints())
            return [e for e in self._endpoints.values() if e.model == model]

    def _endpoint(self, endpoint_id: str) -> Endpoint:
        ep = self._endpoints.get(endpoint_id)
        if ep is None:
            raise UnknownEndpointError(f"no endpoint {endpoint_id!r}; GetStatus lists them")
        return ep

    def _replace(self, ep: Endpoint, *, reason: str, **changes: object) -> Endpoint:
        new = replace(ep, **changes)  # type: ignore[arg-type]
        self._endpoints[ep.id] = new
        self._record([Decision(self._clock(), "weight", ep.id, f"operator: {reason}")])
        return new
