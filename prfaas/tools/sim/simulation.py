"""One simulated deployment under one workload: wiring of instances, link, router and clock.

`SimConfig` says what the deployment is (counts, roles, profiles, link, routing, controllers);
`Simulation.run(requests)` plays every arrival through the router's `route()`, the instances and
the link until the last request finishes, sampling the control state once per short tick (as the
router's control loop does) and returning a `SimResult`.
"""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.search import ClusterModel
from prfaas.roles import Role
from prfaas.router.control import (
    LongTermConfig,
    LongTermController,
    ShortTermConfig,
    ShortTermController,
)
from prfaas.router.policy import RoutingConfig, Target
from prfaas.router.prefix_index import PrefixIndex
from prfaas.tools.loadgen.progress import Progress
from prfaas.tools.sim.cache import InstanceCache
from prfaas.tools.sim.candidates import CandidateView
from prfaas.tools.sim.clock import EventLoop
from prfaas.tools.sim.decode import DecodeStage, DecodeTiming
from prfaas.tools.sim.instance import SimInstance
from prfaas.tools.sim.link import Link, LinkChange, Transfer
from prfaas.tools.sim.prefill import PrefillJob, PrefillStage
from prfaas.tools.sim.profile import ProfileLookup
from prfaas.tools.sim.request import SimRequest
from prfaas.tools.sim.router import SimRouter
from prfaas.tools.sim.tcp import TcpParams


@dataclass(frozen=True)
class SimConfig:
    policy: str
    threshold_tokens: float
    n_prfaas: int
    pd_roles: tuple[Role, ...]
    prfaas_profile: PrefillProfile | None
    pd_profile: PrefillProfile
    decode: DecodeTiming
    max_batch: int
    link_bytes_per_s: float
    tcp: TcpParams = field(default_factory=TcpParams)
    link_schedule: tuple[LinkChange, ...] = ()
    block_size: int = 256
    max_batched_tokens: int = 2048
    cache_budget_bytes: int = 256 << 20
    kv_bytes_per_token: float = 0.0
    """Of the KV pool (decode budget in tokens, cache block bytes); 0: from the PD profile."""
    state_bytes: float = 0.0
    """One linear-state slot (checkpoint) in bytes; 0: from the PD profile."""
    local_kv_bytes_per_s: float = 12.5e9
    """PD-P -> PD-D inside a cluster (RDMA in the paper; never the bottleneck)."""
    routing: RoutingConfig | None = None
    short: ShortTermConfig = field(default_factory=ShortTermConfig)
    short_tick_s: float = 1.0
    long_tick_s: float | None = None
    """None: long-term controller off (as in `prfaas experiment`)."""
    long: LongTermConfig = field(default_factory=LongTermConfig)
    output_tokens_mean: float = 1024.0
    """L_out for the long-term planner model."""
    prefill_pieces: int = 4
    record_itl: bool = True
    client_hop_s: float = 0.0
    """Client -> router -> client per request (hops.py), added to the TTFT and end-to-end time
    the client sees (to_results); 0: requests are timed at the router."""


@dataclass
class SimResult:
    config: SimConfig
    requests: list[SimRequest]
    routing: dict[str, float]
    timeline: list[dict[str, float]]
    link_events: list[dict[str, Any]]
    long_decisions: list[dict[str, Any]]
    stats: dict[str, Any]


def _kv_line(p: PrefillProfile) -> tuple[float, float]:
    """A profile's KV bytes as (per token, per request): the line through its end rows."""
    xs, ys = p.input_tokens, p.kv_bytes
    per_token = float((ys[-1] - ys[0]) / (xs[-1] - xs[0]))
    return per_token, float(ys[0] - per_token * xs[0])


def _kv_sizes(cfg: SimConfig) -> tuple[float, float]:
    p = cfg.pd_profile
    xs, ys = p.input_tokens, p.kv_bytes
    per_token = cfg.kv_bytes_per_token or _kv_line(p)[0]
    state = cfg.state_bytes or float(ys[0] - per_token * xs[0])
    return per_token, max(state, 1.0)


class Simulation:
    def __init__(self, cfg: SimConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.loop = EventLoop(seed)
        self.routing = cfg.routing or RoutingConfig(policy=cfg.policy)
        rc = self.routing
        self.index = PrefixIndex(cfg.block_size)
        per_token, state = _kv_sizes(cfg)
        self.kv_budget_tokens = int(cfg.cache_budget_bytes // per_token)
        block_bytes, slot_bytes = int(per_token * cfg.block_size), int(state)
        self.lookups = {"pd": ProfileLookup(cfg.pd_profile)}
        if cfg.prfaas_profile is not None:
            self.lookups["prfaas"] = ProfileLookup(cfg.prfaas_profile)
        instances: list[SimInstance] = []

        def make(wid: str, cluster: str, role: Role, lookup: ProfileLookup) -> SimInstance:
            cache = None
            if cfg.cache_budget_bytes >= block_bytes + slot_bytes:
                cache = InstanceCache(wid, self.index, cfg.cache_budget_bytes, block_bytes,
                                      slot_bytes)  # fmt: skip
            self.index.register_worker(wid, cluster)
            pre = PrefillStage(self.loop, lookup, cfg.max_batched_tokens, cache,
                               cfg.prefill_pieces)  # fmt: skip
            dec = DecodeStage(self.loop, cfg.decode, cfg.max_batch, self.kv_budget_tokens)
            dec.on_finish = self._finished
            return SimInstance(wid, cluster, role, pre, dec, cfg.max_batch)

        for i in range(cfg.n_prfaas):
            instances.append(make(f"prfaas-{i}", rc.prfaas_cluster, Role.PRFAAS,
                                  self.lookups["prfaas"]))  # fmt: skip
        for i, role in enumerate(cfg.pd_roles):
            instances.append(make(f"pd-{i}", rc.local_cluster, role, self.lookups["pd"]))
        self.instances = {i.worker_id: i for i in instances}
        self.view = CandidateView(instances)
        self.link = Link(self.loop, cfg.link_bytes_per_s, cfg.tcp) if cfg.n_prfaas else None
        short = ShortTermController(cfg.threshold_tokens, cfg.short)
        long = None
        if cfg.long_tick_s is not None:
            model = ClusterModel(
                pd_profile=cfg.pd_profile,
                decode=_decode_profile(cfg),
                output_tokens=cfg.output_tokens_mean,
                n_pd=len(cfg.pd_roles),
                n_prfaas=cfg.n_prfaas,
                prfaas_profile=cfg.prfaas_profile,
                link_bytes_per_s=cfg.link_bytes_per_s,
            )
            long = LongTermController(model, cfg.long)
        shipped = _kv_line(cfg.prfaas_profile or cfg.pd_profile)
        self.router = SimRouter(rc, self.index, short, self.view, self.link, cfg.link_bytes_per_s,
                                long, loop=self.loop, kv_bytes=shipped)  # fmt: skip
        self.routing_counts: dict[str, float] = {}
        self.timeline: list[dict[str, float]] = []
        self.link_events: list[dict[str, Any]] = []
        self.long_decisions: list[dict[str, Any]] = []
        self._inflight = 0
        self._arrivals_left = 0
        self._progress: Progress | None = None
        self.cross_cluster_moves = 0

    # -- request life -------------------------------------------------------------------------
    def _arrive(self, req: SimRequest) -> None:
        self._arrivals_left -= 1
        decision, over_wait = self.router.decide(req)
        key_route = "offload" if decision.target is Target.PRFAAS else "local"
        reason = decision.reason.value
        if over_wait is not None:
            key_route, reason = "refused", "prefill_wait"
        key = f"{self.routing.policy}/{key_route}/{reason}"
        self.routing_counts[key] = self.routing_counts.get(key, 0.0) + 1.0
        req.route = key
        if self._progress is not None:
            self._progress.update(sent=1)
        if decision.target is None or over_wait is not None:
            req.error = (
                "429 no worker has capacity for this request" if over_wait is None else
                f"429 prefill queue on {decision.prefill_worker}: predicted wait {over_wait:.1f}s"
            )  # fmt: skip
            if self._progress is not None:
                self._progress.update(done=1, failed=1)
            return
        self._inflight += 1
        self.router.placed(req, decision, self.loop.now)
        self.router.observe(self.loop.now, decision)
        self.cross_cluster_moves += int(decision.cross_cluster_transfer)
        pre = self.instances[decision.prefill_worker or ""]
        dec = self.instances[decision.decode_worker or ""]
        req.prefill_worker, req.decode_worker = pre.worker_id, dec.worker_id
        dec.decode.reserve(req)
        lookup = self.lookups["prfaas" if pre.cluster == self.routing.prfaas_cluster else "pd"]
        req.kv_bytes = lookup.kv_bytes(req.input_tokens)
        link = self.link
        # The prefill starts together with the decode admission (router/two_worker_handshake.py):
        # P computes while D admits, and P's KV waits at P until D has admitted (D's receiver
        # holds the early OPEN), so no byte moves, and no KV arrives, before `admitted`.
        admitted = dec.decode.admitted_at()
        if decision.target is Target.PRFAAS and link is not None:
            req.offloaded = True
            self.router.committed(req.kv_bytes)
            produced = 0.0  # of the prompt's KV, by the prefill so far
            transfer: Transfer | None = None

            def open_transfer() -> None:
                nonlocal transfer
                transfer = link.start(
                    f"{pre.worker_id}>{dec.worker_id}", req.kv_bytes,
                    lambda: self._kv_delivered(pre, dec, req),
                )  # fmt: skip
                link.supply(transfer, produced * req.kv_bytes)  # what was held for the admission

            def progress(job: PrefillJob, fraction: float) -> None:
                nonlocal produced
                produced = fraction
                if transfer is not None:
                    link.supply(transfer, fraction * req.kv_bytes - transfer.supplied)
                if fraction >= 1.0:
                    pre.held += 1
                    pre.changed()

            if admitted > self.loop.now:
                self.loop.at(admitted, open_transfer)
            else:
                open_transfer()
        else:

            def progress(job: PrefillJob, fraction: float) -> None:
                if fraction >= 1.0:
                    sent_from = max(admitted, self.loop.now)
                    at = sent_from + req.kv_bytes / self.cfg.local_kv_bytes_per_s
                    self.loop.at(at, self._local_kv_arrived, dec, req)

        pre.prefill.submit(PrefillJob(req, progress))

    def _local_kv_arrived(self, dec: SimInstance, req: SimRequest) -> None:
        self.router.prefill_over(req)
        dec.decode.kv_arrived(req)

    def _kv_delivered(self, pre: SimInstance, dec: SimInstance, req: SimRequest) -> None:
        self.router.prefill_over(req)
        self.router.delivered(req.kv_bytes)
        pre.held -= 1
        pre.changed()
        dec.decode.kv_arrived(req)

    def _finished(self, req: SimRequest) -> None:
        self._inflight -= 1
        if self._progress is not None:
            self._progress.update(done=1)

    # -- control loops ------------------------------------------------------------------------
    def _short_tick(self) -> None:
        tel, d = self.router.short_tick(self.cfg.short_tick_s)
        offloaded = sum(v for k, v in self.routing_counts.items() if k.split("/")[1] == "offload")
        prfaas_depth = tel.prfaas_queue_depth
        self.timeline.append({
            "t_s": self.loop.now, "threshold_tokens": d.threshold, "utilization": d.utilization,
            "scarce": float(d.bandwidth_scarce), "egress_bytes_per_s": tel.egress_bytes_per_s,
            "backlog_bytes": tel.backlog_bytes, "prfaas_waiting_mean": prfaas_depth,
            "committed_bytes": tel.committed_bytes or 0.0, "local_wait_s": tel.local_wait_s,
            "offloaded": offloaded, "decisions": sum(self.routing_counts.values()),
            "egress_sent_bytes": self.link.bytes_sent if self.link else 0.0,
            "link_capacity_bytes_per_s": self.link.capacity_bytes_per_s if self.link else 0.0,
            "inflight": float(self._inflight),
        })  # fmt: skip
        if self._busy():
            self.loop.after(self.cfg.short_tick_s, self._short_tick)

    def _long_tick(self) -> None:
        d = self.router.long_tick(self.loop.now)
        if d is not None:
            self.long_decisions.append({
                "t_s": self.loop.now, "reason": d.reason, "threshold": d.threshold,
                "n_p": d.n_p, "n_d": d.n_d, "arrival_rps": d.arrival_rps,
                "actions": [(a.worker_id, a.to_role.value) for a in d.actions],
            })  # fmt: skip
        if self._busy() and self.cfg.long_tick_s is not None:
            self.loop.after(self.cfg.long_tick_s, self._long_tick)

    def _busy(self) -> bool:
        return self._arrivals_left > 0 or self._inflight > 0

    def _link_change(self, change: LinkChange) -> None:
        assert self.link is not None
        self.link.apply(change)
        self.link_events.append({"t_s": self.loop.now, "capacity_fraction":
                                 change.capacity_fraction, "rtt_s": self.link.tcp.rtt_s,
                                 "loss": self.link.tcp.loss})  # fmt: skip

    # -- run ----------------------------------------------------------------------------------
    def run(
        self, requests: list[SimRequest], *, progress: bool = False, label: str = "sim ",
        until_s: float | None = None,
    ) -> SimResult:  # fmt: skip
        started = time.perf_counter()
        self._arrivals_left = len(requests)
        self._progress = Progress(len(requests), label, enabled=progress)
        for req in requests:
            self.loop.at(req.arrival_s, self._arrive, req)
        if self.link is not None:
            for change in self.cfg.link_schedule:
                self.loop.at(change.at_s, self._link_change, change)
        self.loop.after(self.cfg.short_tick_s, self._short_tick)
        if self.cfg.long_tick_s is not None:
            self.loop.after(self.cfg.long_tick_s, self._long_tick)
        # The requests and the heap are built: the collector need not walk them again. Its full
        # passes over ~10 M long-lived objects, set off by the small objects each event allocates,
        # cost a third of the 10,000-GPU hour (cProfile). Results are unaffected.
        gc.collect()
        gc.freeze()
        try:
            self.loop.run_until(float("inf") if until_s is None else until_s)
        finally:
            gc.unfreeze()
        if progress:
            self._progress.stream.write(self._progress.line() + "\n")
        wall = time.perf_counter() - started
        # Peak resident set of this process (KiB on Linux): everything the run held.
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        caches = [i.prefill.cache for i in self.instances.values() if i.prefill.cache]
        looked = sum(c.prompt_tokens for c in caches)
        stats = {
            "events": self.loop.events_run,
            "wall_s": wall,
            "events_per_s": self.loop.events_run / wall if wall > 0 else None,
            "simulated_s": self.loop.now,
            "peak_rss_bytes": peak,
            "instances": len(self.instances),
            "cache_hit_tokens_fraction": (
                sum(c.hit_tokens for c in caches) / looked if looked else None
            ),
            "cross_cluster_moves": self.cross_cluster_moves,
            "prefill_busy_s": {
                w: i.prefill.busy_s for w, i in self.instances.items() if i.is_prefill
            },  # fmt: skip
        }
        return SimResult(self.cfg, requests, dict(self.routing_counts), self.timeline,
                         self.link_events, self.long_decisions, stats)  # fmt: skip


def _decode_profile(cfg: SimConfig) -> DecodeProfile:
    return DecodeProfile(cfg.max_batch, cfg.decode.step_s)
