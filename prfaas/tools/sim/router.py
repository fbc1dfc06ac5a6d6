"""The router's decision code, driven by the simulator: nothing here decides a placement.

`route()`, `PrefixIndex`, `ShortTermController` and `LongTermController` are imported from
`prfaas.router` and called exactly as the dispatcher and control loops call them (module-level
names below are those objects, checked by `tests/sim/test_router_identity.py`). This module only
gathers their inputs from simulated state: snapshots (`candidates.py`), the prefix match, the
link regime, and once per tick the telemetry the control loops would read from heartbeats.
"""

from __future__ import annotations

import math

from prfaas.roles import Role
from prfaas.router.control import (
    CapacitySample,
    LinkCapacityEstimator,
    LinkTelemetry,
    LongTermController,
    LongTermDecision,
    ShortTermController,
    ShortTermDecision,
)
from prfaas.router.policy import (
    LinkState,
    RouteDecision,
    RouteRequest,
    RoutingConfig,
    route,
)
from prfaas.router.prefix_index import PrefixIndex, PrefixMatch
from prfaas.tools.sim.candidates import CandidateView
from prfaas.tools.sim.link import Link
from prfaas.tools.sim.request import SimRequest

EMPTY_MATCH = PrefixMatch()


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
    ) -> None:
        self.config, self.index, self.short, self.long = config, index, short, long
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

    def local_wait_s(self) -> float:
        """ControlLoops._local_wait_s: the mean predicted wait over the local prefill workers."""
        waits = [i.prefill.remaining_s() for i in self.view.instances.values()
                 if i.cluster == self.config.local_cluster and i.is_prefill
                 and not i.draining]  # fmt: skip
        return sum(waits) / len(waits) if waits else 0.0

    def decide(self, req: SimRequest) -> RouteDecision:
        """Dispatcher._route: match, snapshots, link regime, `route()` (again with the link down
        when an offload's KV could not reach its decode worker)."""
        match = self.index.match(req.block_hashes) if req.block_hashes else EMPTY_MATCH
        snaps = self.view.for_request(match, req.input_tokens + req.output_tokens)
        up = self.link is None or self.link.up
        link = LinkState(up=up, bandwidth_scarce=self.short.scarce)
        rreq = RouteRequest(req.input_tokens, req.output_tokens)
        return route(rreq, snaps, match, link, self.short.threshold, self.config, self.short.base)

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
        # As ControlLoops.telemetry: the router's own count of committed and newly offered KV,
        # and the local prefill workers' predicted wait (the controller's local hold and shed).
        return LinkTelemetry(
            egress, capacity, depth, loss, backlog,
            committed_bytes=max(self.committed_bytes, backlog), offered_bytes_per_s=offered,
            link_saturated=self.capacity.saturated, local_wait_s=self.local_wait_s(),
            configured_bytes_per_s=self.configured_link_bytes_per_s,
        )  # fmt: skip

    def short_tick(self, tick_s: float) -> tuple[LinkTelemetry, ShortTermDecision]:
        tel = self.telemetry(tick_s)
        return tel, self.short.update(tel)

    def observe(self, now: float, decision: RouteDecision) -> None:
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
