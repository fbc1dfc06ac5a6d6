"""The router's two control loops, feeding the controllers from the registry's heartbeats.

Short loop (every `short_tick_s`, `short_tick()`): PrfaaS egress = sum of the PrfaaS workers'
`kv_egress_bytes_per_s`, link capacity *measured* (`control.link_capacity`: their delivery rates
and egress under backlog; the topology's link rate is only the prior), mean PrfaaS queue depth,
the KV the router has committed to the link (the offloads whose KV has not reached its decode
worker, `kv_footprint.KvFootprint.committed`: their uncached tokens at the KV bytes per token the
workers report shipping) and how fast new offloads add to it, and the mean predicted wait on the local PD-P workers (`prefill_estimate`),
the uncached lengths the dispatcher routed in the last 30 s (`RecentArrivals`) each with its
prefill seconds on a local PD-P worker (the planner's PD profile times the measured slowdown)
and the KV bytes per token (the law's feed-forward raise on a fallen link and its raise cap)
-> `ShortTermController.update` -> t_eff and the scarce/abundant regime the dispatcher reads;
exports the threshold and the link utilization and goodput.
Long loop (every `long_tick_s`, `long_tick()`): the deployment's arrivals since the last tick
from the workers' prefill histograms (`cluster_arrivals`: every replica's, not only this router's)
into the controller, then `LongTermController.step` over the current snapshots; a new base t
goes to the short-term controller, and, only while this router holds the planner lease among its
replicas (`planner_leadership`, renewed every long tick), each
`RoleChange` becomes a `SetRole` on that PD worker (which drains first); N_p/N_d are logged and
exported. Both loops are tasks on
the router's event loop owned by `ControlLoops` (`start()`/`stop()`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Callable

import numpy as np

from prfaas._proto.prfaas.v1 import worker_pb2
from prfaas.kvtransfer.telemetry import LINE_BUCKET_S, LINE_SAMPLE_S
from prfaas.metrics import RouterMetrics, TransferMetrics
from prfaas.roles import Role
from prfaas.router.cluster_arrivals import ClusterArrivals
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
from prfaas.router.kv_footprint import KvFootprint
from prfaas.router.planner_leadership import PlannerLeadership, SoleLeader
from prfaas.router.prefill_estimate import predicted_wait_s, prefill_speed
from prfaas.router.registry import WorkerHandle, WorkerRegistry

log = logging.getLogger(__name__)

LINK_LABEL = "prfaas-pd"
"""The `link` label of the router's link gauges."""

TELEMETRY_LOG = (
    "link telemetry: egress=%.0f backlog=%.0f delivery=%.0f depth=%.2f loss=%.5f"
    " committed=%.0f offered=%.0f local_wait=%.2f -> capacity=%.0f saturated=%d u=%.3f t=%.0f %s"
    " sending=%.0f ff=%.0f cap=%.0f arrivals=%d"
)
"""One line per short tick while the link carries or queues anything (or t is raised): the
controller's raw inputs and outputs, so a run's router.log can be replayed against the law
(tests/router/test_control_replay.py)."""


LINE_BUSY_FRACTION = 0.5
"""A line-busy bucket counts when some PrfaaS worker waited for the line this much of it."""
LINE_POOL_BUCKETS = 5
"""The line is read over this many of the latest busy buckets (1 s of waiting), pooled across
ticks: over a fifth of a second a shaped line carries anything from nothing (senders backing off
after a loss at the shaper's queue) to 2.5 times its rate (the shaper's token burst): issue 12's
2x-link run, four senders waiting at once, 12 MB/s in one 0.1 s and 158 MB/s two later, on a
62.5 MB/s line (the kernel said neither receiver windows nor send buffers held them)."""
LINE_POOL_WINDOW_BUCKETS = 50
"""Busy buckets older than this (10 s) leave the pool: a reading is of the line as it is now."""


class ControlLoops:
    def __init__(
        self,
        registry: WorkerRegistry,
        short: ShortTermController,
        link_bytes_per_s: float,
        prfaas_cluster: str,
        local_cluster: str,
        long: LongTermController | None = None,
        metrics: RouterMetrics | None = None,
        transfer_metrics: TransferMetrics | None = None,
        short_tick_s: float = 1.0,
        long_tick_s: float = 30.0,
        kv: KvFootprint | None = None,
        default_prefill_tokens_per_s: float = 1000.0,
        leadership: PlannerLeadership | None = None,
        recent_arrivals: RecentArrivals | None = None,
    ) -> None:
        self.registry, self.short, self.long = registry, short, long
        self.link_bytes_per_s = link_bytes_per_s
        self.capacity = LinkCapacityEstimator(link_bytes_per_s)
        self.last_sample = CapacitySample(0.0, 0.0)
        self.prfaas_cluster, self.local_cluster = prfaas_cluster, local_cluster
        self.metrics, self.transfer_metrics = metrics, transfer_metrics
        self.short_tick_s, self.long_tick_s = short_tick_s, long_tick_s
        self._tasks: list[asyncio.Task[None]] = []
        # Cumulative (segments sent, retransmitted) per PrfaaS worker at the previous tick.
        self._tcp_seen: dict[str, tuple[int, int]] = {}
        # KV bytes per prompt token of this deployment (the dispatcher's, `kv_footprint`).
        self.kv = kv or KvFootprint(registry, prfaas_cluster, 16384.0)
        self.default_prefill_tokens_per_s = default_prefill_tokens_per_s
        # Only the leader among router replicas applies role changes (planner_leadership.py).
        self.leadership = leadership or SoleLeader()
        # KV bytes in flight per PrfaaS worker at the previous tick (offered = the rises).
        self._committed_seen: dict[str, float] = {}
        # Line-busy buckets (`_line_busy`): per PrfaaS worker when its latest report was asked
        # (`WorkerHandle.load_asked_s`), the router's wall-clock time it came, and its buckets
        # not yet read; the last bucket read; the last reading.
        self.wall_clock: Callable[[], float] = time.time  # the workers' bucket clock
        self._line_asked: dict[str, float] = {}
        self._line_fresh_at: dict[str, float] = {}
        self._line_buckets: dict[str, dict[int, tuple[float, float]]] = {}
        self._line_done: int | None = None
        self._line_last: tuple[float, float | None] = (0.0, 0.0)
        # The latest buckets some worker waited in: (index, every worker's bytes in it).
        self._line_pool: collections.deque[tuple[int, float]] = collections.deque()
        # The lengths the dispatcher routed lately (the law's feed-forward and raise cap).
        self.recent_arrivals = recent_arrivals or RecentArrivals()
        # The deployment's arrivals, from the workers' reports (every replica's, not only ours).
        self.arrivals = ClusterArrivals(registry)

    def telemetry(self) -> LinkTelemetry:
        # The healthy PrfaaS workers that have reported a load, each with that load.
        reporting = [
            (h, h.load) for h in self.registry.healthy(self.prfaas_cluster) if h.load is not None
        ]
        prfaas = [h for h, _ in reporting]
        egress = sum(load.kv_egress_bytes_per_second for _, load in reporting)
        depth = sum(h.snapshot().queue_depth for h in prfaas) / len(prfaas) if prfaas else 0.0
        backlog = sum(load.kv_queued_bytes for _, load in reporting)
        delivery = sum(load.kv_delivery_bytes_per_second for _, load in reporting)
        sending = sum(load.kv_sending_connections for _, load in reporting)
        busy_rate, busy_s = self._line_busy(reporting)
        self.last_sample = CapacitySample(egress, backlog, delivery, sending, busy_rate, busy_s)
        capacity = self.capacity.update(self.last_sample)
        now = time.monotonic()
        # Several replicas each route a share (`LongTermController.arrival_share`; 1.0 for a
        # sole router). What the workers report (egress, backlog, waits) is the deployment's;
        # what this router counts itself is its share: its offloads' KV in flight and their
        # rate are scaled up by it, and its recent arrivals are the deployment's over
        # window x share seconds.
        share = self.long.arrival_share(now) if self.long is not None else 1.0
        committed, offered = (kv / share for kv in self._committed_kv())
        local = self._local_prefill_workers()
        tokens = self.recent_arrivals.tokens(now)
        bytes_per_token, state_bytes = self.kv.current()
        return LinkTelemetry(
            egress, capacity, depth, self._loss_rate(prfaas), backlog,
            committed_bytes=max(committed, backlog), offered_bytes_per_s=offered,
            link_saturated=self.capacity.saturated, sender_bound=self.capacity.sender_bound,
            capacity_source=self.capacity.source,
            local_wait_s=self._local_wait_s(local),
            configured_bytes_per_s=self.link_bytes_per_s,
            arrivals=ArrivalWindow(tokens, self._local_prefill_s(tokens, local),
                                   self.recent_arrivals.window_s * share),
            kv_bytes_per_token=bytes_per_token,
            kv_state_bytes=state_bytes, local_prefill_workers=len(local),
        )  # fmt: skip

    def _line_busy(
        self, reporting: list[tuple[WorkerHandle, worker_pb2.WorkerLoad]]
    ) -> tuple[float, float | None]:
        """(bytes/s the line carried while KV waited for it, seconds of such waiting) over the
        wall-clock buckets completed since the last tick (`kvtransfer.telemetry.LineBusyMeter`):
        a bucket in which some PrfaaS worker waited at least `LINE_BUSY_FRACTION` of it counts,
        with every worker's bytes in it (the line is shared: the waiting sender's own bytes read
        a healthy line at a fraction of its rate). The rate is read over the latest
        `LINE_POOL_BUCKETS` such buckets, and only on a tick that brought one. A bucket is
        complete once every worker has reported after its end. No bucket completed since the
        last tick: the last tick's reading (reports come every ~0.5 s, slower from a loaded
        worker). (0.0, None) while no worker reports buckets (older workers, or an idle line):
        the estimator then reads the backlog at the report."""
        now = self.wall_clock()
        for h, load in reporting:
            if self._line_asked.get(h.worker_id) == h.load_asked_s:
                continue  # no fresh report from this worker
            self._line_asked[h.worker_id] = h.load_asked_s
            self._line_fresh_at[h.worker_id] = now
            kept = self._line_buckets.setdefault(h.worker_id, {})
            # Lists of unequal length (a faulty worker) are read to the shortest, not raised.
            readings = zip(
                load.kv_line_bucket_bytes, load.kv_line_bucket_waited_seconds, strict=False
            )
            kept.update(zip(load.kv_line_buckets, readings, strict=False))
        workers = [h.worker_id for h, _ in reporting]
        if not any(load.kv_line_buckets for _, load in reporting):
            return 0.0, None
        # Every worker's report was taken after a bucket's end (plus one sample) for it to count.
        oldest = min(self._line_fresh_at.get(w, 0.0) for w in workers)
        complete = math.floor((oldest - LINE_SAMPLE_S) / LINE_BUCKET_S) - 1
        first = complete + 1 if self._line_done is None else self._line_done + 1
        self._line_done = complete if self._line_done is None else max(complete, self._line_done)
        if complete < first:
            return self._line_last
        waited = 0
        for k in range(first, complete + 1):
            per_worker = [self._line_buckets.get(w, {}).get(k, (0.0, 0.0)) for w in workers]
            if max(s for _, s in per_worker) >= LINE_BUSY_FRACTION * LINE_BUCKET_S:
                waited += 1
                self._line_pool.append((k, sum(b for b, _ in per_worker)))
        for kept in self._line_buckets.values():
            for k in [k for k in kept if k <= complete]:
                del kept[k]
        while self._line_pool and self._line_pool[0][0] <= complete - LINE_POOL_WINDOW_BUCKETS:
            self._line_pool.popleft()
        if not waited or len(self._line_pool) < LINE_POOL_BUCKETS:
            self._line_last = 0.0, 0.0  # no new wait, or too little of it to read the line by
        else:
            recent = list(self._line_pool)[-LINE_POOL_BUCKETS:]
            carried = sum(b for _, b in recent) / (len(recent) * LINE_BUCKET_S)
            self._line_last = carried, waited * LINE_BUCKET_S
        return self._line_last

    def _committed_kv(self) -> tuple[float, float]:
        """(KV bytes committed to the link and not yet at their decode workers, KV bytes/s newly
        committed since the last tick): the router's own count of the offloads in flight on
        every PrfaaS worker (a dead worker's offloads are retried elsewhere, so all are read),
        and the rise of each worker's count since the last tick."""
        committed = self.kv.committed()
        new = sum(max(0.0, b - self._committed_seen.get(w, 0.0)) for w, b in committed.items())
        self._committed_seen = committed
        return sum(committed.values()), new / self.short_tick_s

    def _local_prefill_workers(self) -> list[WorkerHandle]:
        """The local prefill-capable workers placement may use now."""
        return [
            h
            for h in self.registry.healthy(self.local_cluster)
            if h.role in (Role.PREFILL, Role.MIXED) and h.snapshot().eligible
        ]

    def _local_wait_s(self, local: list[WorkerHandle]) -> float:
        """Mean predicted wait over the local prefill-capable workers (0 when none is up: then
        nothing can be moved there and the local signal must not hold t). The mean, not the
        least: placement picks by queue depth and cache affinity, so a request may land on any of
        them (the first link-cut run refused on a worker at 31 s while the least waited less)."""
        waits = [predicted_wait_s(h, self.default_prefill_tokens_per_s) for h in local]
        return sum(waits) / len(waits) if waits else 0.0

    def _local_prefill_s(self, tokens: np.ndarray, local: list[WorkerHandle]) -> np.ndarray:
        """[n] seconds each of `tokens` ([n] uncached tokens) takes on one local PD-P worker: the
        local profile rescaled by the measured slowdown when the planner has one, else the local
        workers' mean measured speed (`local_prefill_seconds`)."""
        speeds = (
            [prefill_speed(h, self.default_prefill_tokens_per_s) for h in local]
            if self.long is None
            else []
        )
        return local_prefill_seconds(tokens, self.long, speeds, self.default_prefill_tokens_per_s)

    def _loss_rate(self, prfaas: list) -> float:  # list[WorkerHandle]
        """Retransmitted fraction of the KV segments the PrfaaS workers sent since the last tick
        (kernel TCP_INFO counters reported in their load): the paper's congestion signal."""
        sent = retrans = 0
        for h in prfaas:
            now = (h.load.kv_segments_sent, h.load.kv_segments_retransmitted)
            before = self._tcp_seen.get(h.worker_id, now)
            self._tcp_seen[h.worker_id] = now
            sent += max(0, now[0] - before[0])
            retrans += max(0, now[1] - before[1])
        return retrans / sent if sent else 0.0

    def short_tick(self) -> ShortTermDecision:
        tel = self.telemetry()
        decision = self.short.update(tel)
        raw = self.last_sample
        busy = raw.egress_bytes_per_s or raw.backlog_bytes or tel.committed_bytes
        if busy or decision.threshold != self.short.base:
            log.info(TELEMETRY_LOG, raw.egress_bytes_per_s, raw.backlog_bytes,
                     raw.delivery_bytes_per_s, tel.prfaas_queue_depth, tel.loss_rate,
                     tel.committed_bytes, tel.offered_bytes_per_s, tel.local_wait_s,
                     tel.capacity_bytes_per_s, tel.link_saturated, decision.utilization,
                     decision.threshold, decision.reason, raw.sending, decision.feedforward,
                     min(decision.raise_cap, 1e12), len(tel.arrivals))  # fmt: skip
        if decision.reason != "hold":
            log.info("short-term: t_eff=%.0f scarce=%s u=%.2f capacity=%.3g B/s (%s) (%s)",
                     decision.threshold, decision.bandwidth_scarce, decision.utilization,
                     tel.capacity_bytes_per_s, self.capacity.source, decision.reason)  # fmt: skip
        if self.metrics is not None:
            self.metrics.threshold.set(decision.threshold)
            if decision.reason != "hold":
                self.metrics.record_threshold_change(decision.reason)
        if self.transfer_metrics is not None:
            self.transfer_metrics.goodput.labels(LINK_LABEL).set(tel.egress_bytes_per_s)
            self.transfer_metrics.utilization.labels(LINK_LABEL).set(decision.utilization)
            self.transfer_metrics.capacity.labels(LINK_LABEL).set(tel.capacity_bytes_per_s)
        return decision

    def instance_counts(self) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for snap in self.registry.snapshots():
            if snap.healthy:
                key = (snap.cluster, snap.role.value)
                counts[key] = counts.get(key, 0) + 1
        for cluster, role in ((self.local_cluster, "prefill"), (self.local_cluster, "decode")):
            counts.setdefault((cluster, role), 0)
        return counts

    def calibrate(self) -> dict[str, float]:
        """Feed the long-term planner the deployment's measured prefill speed per cluster, as
        measured / profiled prefill time over the same recent requests (the dispatcher reports
        each completed prefill, `LongTermController.observe_prefill`): a profile of other
        hardware, or an emulated cluster with a time factor, is thereby rescaled to reality; and
        the KV bytes per token its workers ship (`kv_footprint`), for S_kv."""
        assert self.long is not None
        if self.kv.source != "default":  # S_kv as shipped, not the profile's (kv_footprint.py)
            self.long.observe_kv_size(self.kv.bytes_per_token, self.kv.state_bytes)
        slowdown = self.long.measured_slowdown(time.monotonic())
        self.long.observe_stage_speed(pd=slowdown.get("pd"), prfaas=slowdown.get("prfaas"))
        return slowdown

    async def long_tick(self) -> LongTermDecision | None:
        if self.long is None:
            return None
        slowdown = self.calibrate()
        if slowdown:
            log.info("long-term: measured/profiled prefill time %s", slowdown)
        log.info("long-term: KV %.1f B/token + %.0f B/request (%s)", self.kv.bytes_per_token,
                 self.kv.state_bytes, self.kv.source)  # fmt: skip
        now = time.monotonic()
        self.long.observe_cluster(now, *self.arrivals.sample())
        decision = self.long.step(now, self.registry.snapshots(), self.local_cluster)
        log.info("long-term: arrivals from the %s; this router routed %.2f of them",
                 "workers' reports (every replica's)" if decision.arrivals == "cluster"
                 else "requests this router routed", self.long.arrival_share(now))  # fmt: skip
        log.info("long-term: %s t=%.0f N_p=%d N_d=%d rate=%.2f/s actions=%s", decision.reason,
                 decision.threshold, decision.n_p, decision.n_d, decision.arrival_rps,
                 [(a.worker_id, a.to_role.value) for a in decision.actions])  # fmt: skip
        if not math.isnan(decision.threshold):
            if self.metrics is not None and decision.threshold != self.short.base:
                self.metrics.record_threshold_change("plan")
            self.short.set_base(decision.threshold)
        leader = await self.leadership.held()  # renewed every tick, actions or not
        if self.metrics is not None:
            self.metrics.planner_leader.set(int(leader))
        if decision.actions and not leader:
            log.info("long-term: not the planner leader; leaving %s to the leader",
                     [(a.worker_id, a.to_role.value) for a in decision.actions])  # fmt: skip
        for action in decision.actions if leader else ():
            await self.registry.set_role(action.worker_id, Role(action.to_role))
        if self.metrics is not None:
            self.metrics.set_control_state(self.short.threshold, self.instance_counts())
        return decision

    async def _every(self, period_s: float, tick: Callable[[], object]) -> None:
        """Call `tick` every period (awaiting it when it is a coroutine function)."""
        while True:
            await asyncio.sleep(period_s)
            try:
                result = tick()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                log.exception("control tick failed")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.metrics is not None:
            self.metrics.set_control_state(self.short.threshold, self.instance_counts())
        self._tasks = [loop.create_task(self._every(self.short_tick_s, self.short_tick))]
        if self.long is not None:
            self._tasks.append(loop.create_task(self._every(self.long_tick_s, self.long_tick)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.leadership.release()  # another replica's planner takes over at its next tick
