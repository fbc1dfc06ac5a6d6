"""The router's decision code, driven by the simulator: nothing here decides a placement.

`route()`, `PrefixIndex`, `ShortTermController` and `LongTermController` are imported from
`prfaas.router` and called exactly as the dispatcher and control loops call them (module-level
names below are those objects, checked by `tests/sim/test_router_identity.py`). This module only
gathers their inputs from simulated state: snapshots (`candidates.py`), the prefix match, the
link regime, and once per tick the telemetry the control loops would read from heartbeats.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from prfaas.roles import Role
from prfaas.router.control import (
    ArrivalWindow,
    CapacitySample,
    LinkCapacityEstimator,
    LinkTelemetry,
    LongTermController,
    LongTermDecision,
    RecentArrivals,
    ShortTermController,
    ShortTermDecision,
    local_prefill_seconds,
)
from prfaas.router.dispatcher import DispatchConfig
from prfaas.router.policy import (
    LinkState,
    RouteDecision,
    RouteRequest,
    RoutingConfig,
    Target,
    WorkerSnapshot,
    overflow_to_prfaas,
    route,
)
from prfaas.router.prefill_estimate import wait_from_backlog
from prfaas.router.prefix_index import PrefixIndex, PrefixMatch
from prfaas.tools.sim.candidates import CandidateView
from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.instance import SimInstance
from prfaas.tools.sim.link import Link
from prfaas.tools.sim.request import SimRequest

EMPTY_MATCH = PrefixMatch()
DEFAULT_PREFILL_TOKENS_PER_S = DispatchConfig.default_prefill_tokens_per_s
"""A worker's speed before it has computed any (the dispatcher's default)."""
MAX_PREFILL_WAIT_S = DispatchConfig.max_prefill_wait_s
"""The predicted wait past which the dispatcher refuses a request (429)."""


class SimRouter:
    def __init__(
        self,
        config: RoutingConfig,
        index: PrefixIndex,
        short: ShortTermController,
        view: CandidateView,
        link: Link | None,
        configured_link_bytes_per_s: float,
        long: LongTermController | None = None,
        max_prefill_wait_s: float = MAX_PREFILL_WAIT_S,
        *,
        loop: EventLoop,
        kv_bytes: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.kv_bytes_per_token, self.kv_state_bytes = kv_bytes
        """What the PrfaaS workers report shipping (`KvFootprint.current`): per token, per request."""
        self.arrivals = RecentArrivals()
        """The lengths routed lately (`Dispatcher.arrivals`: the short law's feed-forward and cap)."""
        self.config, self.index, self.short, self.long = config, index, short, long
        self.loop = loop
        self.max_prefill_wait_s = max_prefill_wait_s
        self._placed: dict[str, dict[int, tuple[float, int]]] = {}
        """Per prefill worker, this router's prefills placed there and not over, by request:
        (time placed, uncached tokens) (`WorkerHandle.placed_prefills`)."""
        self.view, self.link = view, link
        self.configured_link_bytes_per_s = configured_link_bytes_per_s
        # The router's own estimator, fed the simulated egress and backlog as ControlLoops feeds
        # the workers' reports: the controller divides by measured, not configured, capacity.
        self.capacity = LinkCapacityEstimator(configured_link_bytes_per_s)
        self._egress_seen = 0.0
        self._sending_seen = 0.0
        self.committed_bytes = 0.0
        """KV of the offloads routed and not yet complete at their decode worker (ControlLoops'
        `KvFootprint.committed`)."""
        self._offered_bytes = 0.0

    def committed(self, kv_bytes: float) -> None:
        """An offload was placed: its KV is committed to the link."""
        self.committed_bytes += kv_bytes
        self._offered_bytes += kv_bytes

    def delivered(self, kv_bytes: float) -> None:
        """An offload's KV is complete at its decode worker."""
        self.committed_bytes = max(0.0, self.committed_bytes - kv_bytes)

    def placed(self, req: SimRequest, decision: RouteDecision, now: float) -> None:
        """A prefill was placed (`Attempt._count`): counted in its worker's wait until reported."""
        wid = decision.prefill_worker or ""
        self._placed.setdefault(wid, {})[req.index] = (now, decision.incremental_tokens)

    def prefill_over(self, req: SimRequest) -> None:
        """The request's KV is complete at its decode worker (`Attempt._prefill_over`)."""
        self._placed.get(req.prefill_worker or "", {}).pop(req.index, None)

    def predicted_wait_s(self, inst: SimInstance) -> tuple[float, bool]:
        """(`prefill_estimate.predicted_wait_s`, `speed_measured`) from what the real worker
        would report: its engine's compute backlog at the last poll, aged since, plus the tokens
        this router placed there after that poll at the worker's reported speed."""
        stage = inst.prefill
        backlog, asked = stage.reported_backlog_s()
        placed = self._placed.get(inst.worker_id)
        unseen = 0
        if placed:
            for key in [k for k, (t, _) in placed.items() if t < asked]:
                del placed[key]  # in a report now, and stays so
            unseen = sum(tokens for _, tokens in placed.values())
        speed, measured = _speed(inst)
        return wait_from_backlog(backlog, self.loop.now - asked, unseen, speed), measured

    def _local_prefill_workers(self) -> list[SimInstance]:
        return [i for i in self.view.instances.values()
                if i.cluster == self.config.local_cluster and i.is_prefill
                and not i.draining]  # fmt: skip

    def local_wait_s(self, local: list[SimInstance] | None = None) -> float:
        """ControlLoops._local_wait_s: the mean predicted wait over the local prefill workers."""
        local = self._local_prefill_workers() if local is None else local
        waits = [self.predicted_wait_s(i)[0] for i in local]
        return sum(waits) / len(waits) if waits else 0.0

    def _local_prefill_s(self, tokens: np.ndarray, local: list[SimInstance]) -> np.ndarray:
        """ControlLoops._local_prefill_s: [n] seconds of each of `tokens` on one local PD-P
        worker, from the planner's PD profile x its measured slowdown, else the workers' mean
        reported speed."""
        speeds = [_speed(i)[0] for i in local] if self.long is None else []
        return local_prefill_seconds(tokens, self.long, speeds, DEFAULT_PREFILL_TOKENS_PER_S)

    def _with_wait(self, snap: WorkerSnapshot) -> WorkerSnapshot:
        """Dispatcher._with_wait: a prefill worker's snapshot with its predicted wait."""
        inst = self.view.instances[snap.worker_id]
        if not inst.is_prefill:
            return snap
        return replace(snap, predicted_wait_s=self.predicted_wait_s(inst)[0])

    def _over_wait_budget(self, d: RouteDecision) -> float | None:
        """Dispatcher._over_wait_budget: the predicted wait when past the budget (measured speed)."""
        inst = self.view.instances.get(d.prefill_worker or "")
        if inst is None:
            return None
        wait, measured = self.predicted_wait_s(inst)
        return wait if wait > self.max_prefill_wait_s and measured else None

    def decide(self, req: SimRequest) -> tuple[RouteDecision, float | None]:
        """Dispatcher._route: match, snapshots with each prefill worker's predicted wait, link
        regime, `route()` (again with the link down when an offload's KV could not reach its
        decode worker); a local placement over its wait budget goes to PrfaaS when PrfaaS can take
        it in budget (`overflow_to_prfaas`). Returns the decision and, when the chosen prefill
        worker's predicted wait is past the budget, that wait (the dispatcher answers 429).
        At scale (a pruned worker list, candidates.py) the snapshots carry no wait: placement
        there balances by queue depth; the budget is still judged on the chosen worker."""
        match = self.index.match(req.block_hashes) if req.block_hashes else EMPTY_MATCH
        snaps = self.view.for_request(match, req.input_tokens + req.output_tokens)
        if not self.view.prune:
            snaps = [self._with_wait(s) for s in snaps]
        up = self.link is None or self.link.up
        link = LinkState(up=up, bandwidth_scarce=self.short.scarce)
        rreq = RouteRequest(req.input_tokens, req.output_tokens)
        t, cfg = self.short.threshold, self.config
        decision = route(rreq, snaps, match, link, t, cfg, self.short.base)
        if decision.target is None:
            return decision, None
        if decision.target is Target.LOCAL and self._over_wait_budget(decision) is not None:
            offload = overflow_to_prfaas(rreq, snaps, match, link, t, cfg)
            if offload is not None and self._over_wait_budget(offload) is None:
                decision = offload
        return decision, self._over_wait_budget(decision)

    def telemetry(self, tick_s: float) -> LinkTelemetry:
        """ControlLoops.telemetry over the simulated PrfaaS workers and link."""
        prfaas = [
            i for i in self.view.instances.values() if i.cluster == self.config.prfaas_cluster
        ]
        depth = sum(i.queue_depth for i in prfaas) / len(prfaas) if prfaas else 0.0
        egress = backlog = loss = sending = 0.0
        if self.link is not None:
            sent = self.link.bytes_sent
            egress = (sent - self._egress_seen) / tick_s
            self._egress_seen = sent
            peer_s = self.link.sending_peer_seconds
            sending = (peer_s - self._sending_seen) / tick_s
            self._sending_seen = peer_s
            backlog = self.link.backlog_bytes
            loss = self.link.tcp.loss if self.link.active_transfers else 0.0
        # No kernel delivery rate in the fluid model: egress is what got through. The mean
        # number of sending peers lets the estimator tell per-peer limits from the line's.
        capacity = self.capacity.update(CapacitySample(egress, backlog, egress, sending))
        offered, self._offered_bytes = self._offered_bytes / tick_s, 0.0
        local = self._local_prefill_workers()
        tokens = self.arrivals.tokens(self.loop.now)
        arrivals = ArrivalWindow(
            tokens, self._local_prefill_s(tokens, local), self.arrivals.window_s
        )
        # As ControlLoops.telemetry: the router's own count of committed and newly offered KV,
        # and the local prefill workers' predicted wait (the controller's local hold and shed).
        return LinkTelemetry(
            egress, capacity, depth, loss, backlog,
            committed_bytes=max(self.committed_bytes, backlog), offered_bytes_per_s=offered,
            link_saturated=self.capacity.saturated, sender_bound=self.capacity.sender_bound,
            capacity_source=self.capacity.source,
            local_wait_s=self.local_wait_s(local),
            configured_bytes_per_s=self.configured_link_bytes_per_s,
            arrivals=arrivals,
            kv_bytes_per_token=self.kv_bytes_per_token, kv_state_bytes=self.kv_state_bytes,
            local_prefill_workers=len(local),
        )  # fmt: skip

    def short_tick(self, tick_s: float) -> tuple[LinkTelemetry, ShortTermDecision]:
        tel = self.telemetry(tick_s)
        return tel, self.short.update(tel)

    def observe(self, now: float, decision: RouteDecision) -> None:
        """Dispatcher._record: the routed length, for the short law and the long-term planner."""
        self.arrivals.observe(now, decision.incremental_tokens)
        if self.long is not None:
            self.long.observe_request(now, decision.incremental_tokens)

    def long_tick(self, now: float) -> LongTermDecision | None:
        """ControlLoops.long_tick without calibration (the simulated speed is the profile's)."""
        if self.long is None:
            return None
        decision = self.long.step(now, self.view.all(), self.config.local_cluster)
        if not math.isnan(decision.threshold):
            self.short.set_base(decision.threshold)
        for action in decision.actions:
            self.view.instances[action.worker_id].set_role(Role(action.to_role))
        return decision


def _speed(inst: SimInstance) -> tuple[float, bool]:
    """(`prefill_estimate.prefill_speed`, `speed_measured`): the worker's reported speed, its
    prefill tokens over its prefill seconds, else the dispatcher's default."""
    stage = inst.prefill
    reported = stage.tokens_computed / stage.busy_s if stage.busy_s > 0 else 0.0
    return reported or DEFAULT_PREFILL_TOKENS_PER_S, reported > 0
