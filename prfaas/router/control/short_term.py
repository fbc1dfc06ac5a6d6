"""Short-timescale control: link telemetry -> effective threshold t_eff and scarce/abundant regime.

Control law (one `update()` per tick, e.g. every second; constants in `ShortTermConfig`):
  u      = EWMA of PrfaaS egress / link capacity (weight `ewma_alpha` on the new sample); the
           capacity is measured (`link_capacity`), so under a backlog u reads ~1 by construction.
  b      = KV bytes queued in the PrfaaS senders / (capacity · backlog_horizon_s).
  K      = KV bytes the router has *committed* to the link: every offload whose KV is not yet
           complete at its decode worker (queued, computing, in the sender or on the wire).
  drain  = K / capacity: seconds the link needs for what is already committed.
  rho    = KV bytes/s newly committed by offloads (EWMA over ticks) / capacity: the load the
           current t offers the link. Under a backlog the sender queue keeps growing from
           prefills that were already running when t rose (a cut link), so neither u nor b says
           whether t is high enough; rho does: once the offloads t still lets through fit the
           link, rho < 1 and t stops rising, however long the committed KV takes to drain.
  W      = mean predicted prefill wait on the local PD-P workers (seconds).
  link pressure:
           "backlog"  saturated (b >= 1 or the estimator sees a backlog) and rho >= 1 and
                      drain >= commit_horizon_s (committed KV that the link carries within the
                      horizon is no reason to move long prompts onto the slower local prefills);
           "egress"   unsaturated and u >= u_high (the link is nearly full but still keeps up:
                      the paper's early signal);
           "loss"     loss >= loss_high;   "queue"  PrfaaS queue depth >= queue_high.
  local    W >= local_hold_fraction · local_wait_budget_s: no raise (a raise moves long prompts
           onto local queues that are already long); W >= local_shed_fraction · budget (the hold
           level itself when A below is known): t steps *down* even under link pressure — a long prompt queued behind a slow link on PrfaaS
           is served late, one refused by a full local queue (HTTP 429) is not served at all.
  calm   = unsaturated, u <= u_low, b <= backlog_low, drain < commit_horizon_s, loss <= loss_low
           and queue depth <= queue_low.
  sender-bound ticks (`LinkTelemetry.sender_bound`: the backlog waits at senders that each get
           their own connections' ceiling, the line has room): b = drain = 0. That backlog is no
           pressure on the line, and keeping long prompts local cannot drain it faster; read as
           pressure it kept t raised for good (issue 18's MiniMax-M2.5 projection: a sender
           backlog at every t, so never calm).
  A      = the uncached lengths of the requests routed in the last arrival window (seconds),
           each with its prefill time on one local PD-P worker (`LinkTelemetry.arrivals`).
  t_ff   = feed-forward t, only while the measured capacity is below feedforward_below of the
           configured rate (the link fell): the t at which A's offloads (lengths > t, at the KV
           bytes per token) offer at most feedforward_fill · capacity — set at once, without
           waiting for a backlog or for rho >= 1 (issue 12's 4x drop: at 0.4 Λ the offloads
           never committed KV faster than the fallen link, so the backlog rule raised t only
           ~32 s after the drop). 0 when the link has not fallen or A is unknown.
  cap    = the highest t a raise may reach: A's prompts between the current t and the raised
           one, at the local profile, arriving for raise_horizon_s and shared by the local
           PD-P workers, added to W stay under the hold level (a raise is judged by the local
           wait it will cause, not by W before it: issue 12's 4x drop at 0.5 Λ raised t to
           91K with W just under the hold, and the long prompts it kept local built queues
           that took ~60 s to drain after the restore); and no higher than the t at which A's
           prompts of at most t tokens use local_fill of the local PD-P workers' prefill time
           (a drop held for minutes holds the raise that long: a local rate above the workers'
           grows their queues all that time). inf when A is unknown.
  press (no local hold, no raise in the last raise_cooldown_ticks ticks)
                   -> t_eff = min(t_eff + max(t_eff·(raise_factor-1), min_step_tokens), t_max,
                      cap) (no raise when cap <= t_eff).
  t_ff > t_eff (no local hold; no cooldown)
                   -> t_eff = min(t_ff, cap) ("raise:capacity").
  local shed, or calm for `calm_ticks` ticks
                   -> t_eff = max(t_eff / lower_factor, floor), snapping to the floor within
                      min_step_tokens (one step per tick); calm never lowers below t_ff (the
                      link is still measured fallen; it relaxes toward the configured rate
                      between backlogs, and t_ff with it).
  otherwise        -> hold (the band u_low < u < u_high is the hysteresis that stops oscillation).
  floor  = t_base, or below it when the measured capacity exceeds the configured one by
           `fast_margin`: t_base · configured / measured (at least min_floor_fraction · t_base),
           so a link faster than configured takes more offloads than the planner's t sends it.
Raising t sends only longer requests to PrfaaS: fewer offloads with lower KV throughput each
(Φ_kv falls with length), so egress drops (paper §3.4.2). Lowering needs a calm streak, so a
recovering link is re-used in a few steps without ringing.
Regime: scarce when u >= scarce_on or press; abundant again only when u <= scarce_off and no
pressure (separate on/off levels, hysteresis). t_base comes from the planner (`set_base`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prfaas.router.control.arrivals import ArrivalWindow


@dataclass(frozen=True)
class ShortTermConfig:
    """Constants of the short-term control law (all dimensionless unless stated)."""

    ewma_alpha: float = 0.5
    """Weight of the newest utilisation sample."""
    u_high: float = 0.9
    """Egress utilisation that counts as pressure."""
    u_low: float = 0.7
    """Egress utilisation below which the link counts as calm."""
    loss_high: float = 0.01
    """Retransmitted/lost fraction of segments that counts as pressure."""
    loss_low: float = 0.001
    """Loss fraction below which the link counts as calm."""
    queue_high: int = 8
    """Mean PrfaaS queue depth (requests per worker) that counts as pressure."""
    queue_low: int = 2
    """Mean PrfaaS queue depth that counts as calm."""
    raise_factor: float = 1.25
    """Multiplicative step up of t_eff under pressure."""
    lower_factor: float = 1.2
    """Multiplicative step down of t_eff when calm or when local queues are long."""
    min_step_tokens: float = 512.0
    """Smallest change of t_eff per step (so t_base = 0, 'offload all', can still rise)."""
    raise_cooldown_ticks: int = 3
    """Ticks after a raise before the next one, so the effect of a step is seen first (a link
    draining a backlog stays busy for a while after the offered load already fell)."""
    calm_ticks: int = 2
    """Consecutive calm ticks before t_eff starts stepping down."""
    t_max: float = 1 << 20
    """Ceiling of t_eff in tokens (effectively 'offload nothing')."""
    scarce_on: float = 0.6
    """Utilisation at which bandwidth becomes scarce (no cross-cluster cache moves)."""
    scarce_off: float = 0.3
    """Utilisation under which bandwidth becomes abundant again."""
    backlog_horizon_s: float = 2.0
    """Seconds of link capacity the senders' queued KV bytes may hold before it is pressure."""
    backlog_low: float = 0.25
    """Backlog (in horizons) under which the link counts as calm."""
    offered_alpha: float = 0.3
    """Weight of the newest tick in the EWMA of newly committed KV bytes/s (rho)."""
    commit_horizon_s: float = 4.0
    """Committed KV the link delivers within this many seconds is no backlog pressure."""
    local_wait_budget_s: float = 30.0
    """The local prefill queues' wait budget (the dispatcher's `max_prefill_wait_s`)."""
    local_hold_fraction: float = 0.4
    """Local PD-P wait (fraction of the budget) from which t no longer rises."""
    local_shed_fraction: float = 0.6
    """Local PD-P wait (fraction of the budget) from which t steps down, link or not."""
    local_fill: float = 0.85
    """Share of the local PD-P workers' prefill time the recent prompts t keeps local may use: no
    raise past it (the link's excess queues on the link, which drains at the restored rate; 0:
    no such cap)."""
    fast_margin: float = 1.25
    """Measured/configured capacity above which t may fall below t_base."""
    min_floor_fraction: float = 0.25
    """Lowest t_eff on a fast link, as a fraction of t_base."""
    feedforward_below: float = 0.8
    """Measured/configured capacity under which the link counts as fallen, and t_eff is set at
    once so the recent arrivals' offloads fit it (the feed-forward raise)."""
    feedforward_fill: float = 0.7
    """Fraction of a fallen link's measured capacity the offloads at the feed-forward t may
    offer (u_low: the link then reads calm at that t, so the calm rule does not undo it)."""
    feedforward_hold_ticks: int = 10
    """Ticks the capacity measured by the latest saturated tick stands for the feed-forward:
    between backlogs the estimate relaxes toward the configured rate (`link_capacity`), and a
    feed-forward that followed it let t fall back to t_base and rise again every ~20 s on the
    fallen link (issue 12, the 0.5 Λ drop run on bbf9621); a restored link drains its backlog
    at the restored rate, a saturated tick that ends the hold at once; so does egress that
    proves more room without a backlog (the estimator's `lower_bound`: a restore with nothing
    queued to drain through it kept t raised 10 s past it in the 0.4 Λ drop run on 21cbd7d)."""
    raise_horizon_s: float = 30.0
    """Seconds of arrivals a raise is costed for on the local PD-P queues: a raise may add the
    prompts between the current and the raised t that arrive in this long (at the recent rate)
    to the local wait W, up to the hold level. The arrival window itself: a raise holds for tens
    of seconds, not one cooldown (at 10 s, the 0.5 Λ drop run on 62d5a3a still took W to ~15 s
    at the restore)."""


@dataclass(frozen=True)
class LinkTelemetry:
    """One tick of measurements (from kvtransfer telemetry and the registry)."""

    egress_bytes_per_s: float
    """PrfaaS -> PD bytes/s over the last tick."""
    capacity_bytes_per_s: float
    """Link capacity (configured B_out, or a measured estimate)."""
    prfaas_queue_depth: float = 0.0
    """Mean queued requests per PrfaaS worker."""
    loss_rate: float = 0.0
    """Retransmitted or lost fraction of segments over the tick."""
    backlog_bytes: float = 0.0
    """KV bytes queued in the PrfaaS workers' senders, not yet on the wire."""
    committed_bytes: float | None = None
    """KV bytes of offloads not yet complete at their decode worker (the router's count);
    None: only the senders' backlog is known, and it stands in."""
    offered_bytes_per_s: float | None = None
    """KV bytes/s newly committed to the link by offloads over the tick (the router's count);
    None: what entered the senders stands in (egress plus the backlog's growth per tick)."""
    link_saturated: bool = False
    """The capacity estimator saw a backlog the link limits (`LinkCapacityEstimator.saturated`)."""
    capacity_source: str = "configured"
    """How the estimator last set the capacity (`LinkCapacityEstimator.source`)."""
    local_wait_s: float = 0.0
    """Mean predicted prefill wait on the local PD-P workers."""
    configured_bytes_per_s: float = 0.0
    """The configured link rate (0: unknown, t_eff never goes below t_base)."""
    arrivals: ArrivalWindow = field(default_factory=ArrivalWindow)
    """Uncached tokens and seconds of prefill on one local PD-P worker of each request routed in
    the last `arrivals.window_s` (empty: unknown; no feed-forward raise and raises are judged by
    W alone)."""
    kv_bytes_per_token: float = 0.0
    """KV bytes an offload ships per uncached token (`kv_footprint`)."""
    kv_state_bytes: float = 0.0
    """KV bytes an offload ships per request on top of the per-token bytes."""
    local_prefill_workers: int = 0
    """Local PD-P workers that share the prompts a raise keeps local."""
    sender_bound: bool = False
    """The backlog waits at senders each bound by their own ceiling, not the line
    (`LinkCapacityEstimator.sender_bound`): no line pressure."""


@dataclass(frozen=True)
class ShortTermDecision:
    threshold: float
    """t_eff for routing decisions until the next tick."""
    bandwidth_scarce: bool
    utilization: float
    reason: str
    """hold | raise:capacity | raise:backlog | raise:egress | raise:loss | raise:queue |
    lower:calm | lower:local | base | floor (t_eff reached a floor below t_base, or was lifted to
    it)."""
    feedforward: float = 0.0
    """The t at which the recent arrivals' offloads fit a fallen link (0: the link has not
    fallen, or the arrivals are unknown)."""
    raise_cap: float = float("inf")
    """The highest t whose extra local prompts keep W under the hold level (inf: unknown)."""


class ShortTermController:
    """Holds t_eff and the regime; `update()` is called once per tick and never blocks."""

    def __init__(self, base_threshold: float, config: ShortTermConfig | None = None) -> None:
        self.config = config or ShortTermConfig()
        self.base = base_threshold
        self.threshold = base_threshold
        self.scarce = True
        self.utilization = 0.0
        self.capacity_bytes_per_s = 0.0
        """The link capacity of the latest tick (measured; 0 before the first tick)."""
        self._calm_streak = 0
        self._cooldown = 0
        self._last_backlog = 0.0
        self.offered_bytes_per_s = 0.0
        """EWMA of the KV bytes/s newly committed to the link (rho's numerator)."""
        self.floor = base_threshold
        """The lowest t_eff of the latest tick (t_base unless the link is measured faster)."""
        self._saturated_capacity = 0.0
        self._since_saturated = 0

    def set_base(self, base_threshold: float) -> None:
        """Called by the long-term controller after re-planning; t_eff never goes below it
        (unless the link is measured faster than configured, `floor`)."""
        self.base = base_threshold
        self.floor = base_threshold
        self.threshold = max(self.threshold, base_threshold)

    def _floor(self, tel: LinkTelemetry) -> float:
        cfg = self.config
        configured = tel.configured_bytes_per_s
        if configured <= 0 or tel.capacity_bytes_per_s < cfg.fast_margin * configured:
            return self.base
        scaled = self.base * configured / tel.capacity_bytes_per_s
        return max(scaled, self.base * cfg.min_floor_fraction)

    def _step_down(self, kind: str, floor: float | None = None) -> str:
        cfg = self.config
        floor = self.floor if floor is None else max(floor, self.floor)
        lowered = self.threshold / cfg.lower_factor
        if lowered - floor < cfg.min_step_tokens:
            lowered = floor
        self.threshold = max(lowered, floor)
        if self.threshold == self.base:
            return "base"
        return "floor" if self.threshold == self.floor else f"lower:{kind}"

    def _feedforward(self, tel: LinkTelemetry) -> float:
        """The t at which the recent arrivals' offloads offer at most `feedforward_fill` of a
        link measured below `feedforward_below` of its configured rate, by its latest saturated
        tick within `feedforward_hold_ticks` or else the estimate (0: not fallen, unknown,
        or they fit at any t): the longest prompts fill that budget, and the first that overflows
        it stays local (an offload needs uncached tokens > t)."""
        cfg = self.config
        window = tel.arrivals.window_s
        if tel.link_saturated:
            self._saturated_capacity, self._since_saturated = tel.capacity_bytes_per_s, 0
        elif tel.capacity_source == "lower_bound":
            # The link carried more than the estimate without a backlog, for `sustain_ticks`:
            # what the last saturated tick measured is over (a restore no backlog drained).
            self._saturated_capacity = 0.0
        else:
            self._since_saturated += 1
        capacity = tel.capacity_bytes_per_s
        if self._saturated_capacity and self._since_saturated <= cfg.feedforward_hold_ticks:
            capacity = min(capacity, self._saturated_capacity)
        fallen = capacity < cfg.feedforward_below * tel.configured_bytes_per_s
        if not (len(tel.arrivals) and window > 0 and tel.kv_bytes_per_token > 0 and fallen):
            return 0.0
        budget = cfg.feedforward_fill * capacity * window
        longest_first = tel.arrivals.by_length[0][::-1]
        offered = np.cumsum(tel.kv_state_bytes + longest_first * tel.kv_bytes_per_token)
        over = np.flatnonzero(offered > budget)
        return float(longest_first[over[0]]) if over.size else 0.0

    def _raise_cap(self, tel: LinkTelemetry, hold_s: float) -> float:
        """The highest t a raise may reach: the recent prompts above the current t, in order of
        length, costed at a local PD-P worker and arriving for `raise_horizon_s` at the recent
        rate, shared by the local workers, may add to the local wait W up to `hold_s`, and no
        higher than `_fill_cap` (inf: arrivals unknown, or all of them fit)."""
        window, workers = tel.arrivals.window_s, tel.local_prefill_workers
        if not (len(tel.arrivals) and window > 0 and workers > 0):
            return float("inf")
        room = (hold_s - tel.local_wait_s) * workers * window / self.config.raise_horizon_s
        tokens, seconds = tel.arrivals.by_length
        first_above = int(np.searchsorted(tokens, self.threshold, side="right"))
        added = np.cumsum(seconds[first_above:])
        over = np.flatnonzero(added > room)
        by_wait = float(tokens[first_above + over[0]]) - 1.0 if over.size else float("inf")
        return min(by_wait, self._fill_cap(tel))

    def _fill_cap(self, tel: LinkTelemetry) -> float:
        """The highest t at which the window's prompts of at most t uncached tokens, at a local
        PD-P worker's prefill seconds and shared by the local workers, use at most `local_fill`
        of their prefill time (inf: all of them fit). The wait cap above judges a raise by the
        queue it adds within its horizon; a drop held for minutes keeps the raised t that long,
        and a local rate above the workers' own grows their queues all that time, which drain
        no faster after the restore (issue 12's 4x drop at 0.5 Λ)."""
        cfg, arr = self.config, tel.arrivals
        if cfg.local_fill <= 0:
            return float("inf")
        tokens, seconds = arr.by_length
        used = np.cumsum(seconds) / (arr.window_s * tel.local_prefill_workers)
        over = np.flatnonzero(used > cfg.local_fill)
        return float(tokens[over[0]]) - 1.0 if over.size else float("inf")

    def update(self, tel: LinkTelemetry) -> ShortTermDecision:
        cfg = self.config
        capacity = max(tel.capacity_bytes_per_s, 1e-9)
        self.capacity_bytes_per_s = tel.capacity_bytes_per_s
        self.utilization = (
            cfg.ewma_alpha * tel.egress_bytes_per_s / capacity
            + (1 - cfg.ewma_alpha) * self.utilization
        )
        u = self.utilization
        offered = tel.offered_bytes_per_s
        if offered is None:  # no router-side count: what entered the senders (sent + queue growth)
            offered = tel.egress_bytes_per_s + max(0.0, tel.backlog_bytes - self._last_backlog)
        self._last_backlog = tel.backlog_bytes
        self.offered_bytes_per_s += cfg.offered_alpha * (offered - self.offered_bytes_per_s)
        rho = self.offered_bytes_per_s / capacity
        backlog = tel.backlog_bytes / (capacity * cfg.backlog_horizon_s)
        committed = tel.backlog_bytes if tel.committed_bytes is None else tel.committed_bytes
        drain_s = committed / capacity
        if tel.sender_bound:  # the senders' own ceilings hold it, not the line
            backlog = drain_s = 0.0
        saturated = tel.link_saturated or backlog >= 1.0
        causes = [
            name
            for name, hit in (
                ("backlog", saturated and rho >= 1.0 and drain_s >= cfg.commit_horizon_s),
                ("egress", not saturated and u >= cfg.u_high),
                ("loss", tel.loss_rate >= cfg.loss_high),
                ("queue", tel.prfaas_queue_depth >= cfg.queue_high),
            )
            if hit
        ]
        calm = (
            not saturated
            and u <= cfg.u_low
            and backlog <= cfg.backlog_low
            and drain_s < cfg.commit_horizon_s
            and tel.loss_rate <= cfg.loss_low
            and tel.prfaas_queue_depth <= cfg.queue_low
        )
        budget = cfg.local_wait_budget_s
        local_hold = tel.local_wait_s >= cfg.local_hold_fraction * budget
        local_shed = tel.local_wait_s >= cfg.local_shed_fraction * budget
        if len(tel.arrivals) and tel.local_prefill_workers > 0:
            # The local wait is judged as a raise is: at the hold level the prompts t keeps
            # local are building the local queues, which drain no faster after a restore,
            # while a backlog on the link drains at the restored rate; so t steps down.
            local_shed = local_shed or local_hold
        self.floor = self._floor(tel)
        feedforward = self._feedforward(tel)
        cap = min(self._raise_cap(tel, cfg.local_hold_fraction * budget), cfg.t_max)
        step = max(self.threshold * (cfg.raise_factor - 1), cfg.min_step_tokens)
        raised = min(self.threshold + step, cap)
        reason = "hold"
        self._cooldown = max(0, self._cooldown - 1)
        if self.threshold < self.floor:
            self.threshold, reason = self.floor, "floor"  # the link lost the speed it had
        elif local_shed and self.threshold > self.floor:
            self._calm_streak = 0
            reason = self._step_down("local")
        elif min(feedforward, cap) > self.threshold and not local_hold:
            # The link fell: t at once where the recent arrivals' offloads fit it, no backlog
            # needed, but no higher than the local queues can take.
            self._calm_streak = 0
            self._cooldown = cfg.raise_cooldown_ticks
            self.threshold, reason = min(feedforward, cap), "raise:capacity"
        elif causes and not local_hold and self._cooldown == 0 and raised > self.threshold:
            self._calm_streak = 0
            self._cooldown = cfg.raise_cooldown_ticks
            self.threshold = raised
            reason = f"raise:{causes[0]}"
        elif causes:
            self._calm_streak = 0
        elif calm:
            self._calm_streak += 1
            lowest = max(self.floor, feedforward)  # not below t_ff while the link is fallen
            if self._calm_streak >= cfg.calm_ticks and self.threshold > lowest:
                reason = self._step_down("calm", feedforward)
        else:
            self._calm_streak = 0
        if causes or reason == "raise:capacity" or u >= cfg.scarce_on:
            self.scarce = True
        elif u <= cfg.scarce_off:
            self.scarce = False
        return ShortTermDecision(self.threshold, self.scarce, u, reason, feedforward, cap)
