"""Short-timescale control: link telemetry -> effective threshold t_eff and scarce/abundant regime.

Control law (one `update()` per tick, e.g. every second; constants in `ShortTermConfig`):
  u      = EWMA of PrfaaS egress / link capacity (weight `ewma_alpha` on the new sample).
  b      = KV bytes queued in the PrfaaS senders / (link capacity · backlog_horizon_s): how
           many horizons of backlog wait for the link. When the real link is slower than its
           configured capacity (a cut, congestion elsewhere), egress cannot show it — goodput
           just falls — but the backlog grows; b is that signal.
  press  = u >= u_high  or  b >= 1  or  loss >= loss_high  or  PrfaaS queue depth >= queue_high;
           except that while the backlog is draining (it fell by more than `drain_fraction`
           since the last tick) a busy link and a remaining backlog are not pressure: the
           offered load is already below capacity, and raising t further only pushes long
           prompts onto the local prefill queues (seen in the fluctuation run: t climbed to
           347K tokens while a cut link drained).
  calm   = u <= u_low   and b <= backlog_low  and loss <= loss_low  and queue depth <= queue_low.
  press (and no raise in the last raise_cooldown_ticks ticks)
                   -> t_eff = min(t_eff + max(t_eff·(raise_factor-1), min_step_tokens), t_max).
  calm for
  `calm_ticks` ticks -> t_eff = max(t_eff / lower_factor, t_base), snapping to t_base within
                     min_step_tokens (one step per calm tick).
  otherwise        -> hold (the band u_low < u < u_high is the hysteresis that stops oscillation).
Raising t sends only longer requests to PrfaaS: fewer offloads with lower KV throughput each
(Φ_kv falls with length), so egress drops (paper §3.4.2). Steps down are smaller than steps up
and need a calm streak, so a recovering link is re-used gradually (AIMD-like, no ringing).
Regime: scarce when u >= scarce_on or press; abundant again only when u <= scarce_off and no
pressure (separate on/off levels, hysteresis). t_base comes from the planner (`set_base`).
"""

from __future__ import annotations

from dataclasses import dataclass


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
    lower_factor: float = 1.1
    """Multiplicative step down of t_eff when calm (smaller than raise_factor)."""
    min_step_tokens: float = 512.0
    """Smallest change of t_eff per step (so t_base = 0, 'offload all', can still rise)."""
    raise_cooldown_ticks: int = 3
    """Ticks after a raise before the next one, so the effect of a step is seen first (a link
    draining a backlog stays busy for a while after the offered load already fell)."""
    calm_ticks: int = 3
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
    drain_fraction: float = 0.05
    """A backlog that fell by more than this fraction since the last tick is draining."""


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


@dataclass(frozen=True)
class ShortTermDecision:
    threshold: float
    """t_eff for routing decisions until the next tick."""
    bandwidth_scarce: bool
    utilization: float
    reason: str
    """hold | raise:egress | raise:loss | raise:queue | lower:calm | base."""


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

    def set_base(self, base_threshold: float) -> None:
        """Called by the long-term controller after re-planning; t_eff never goes below it."""
        self.base = base_threshold
        self.threshold = max(self.threshold, base_threshold)

    def update(self, tel: LinkTelemetry) -> ShortTermDecision:
        cfg = self.config
        self.capacity_bytes_per_s = tel.capacity_bytes_per_s
        sample = tel.egress_bytes_per_s / max(tel.capacity_bytes_per_s, 1e-9)
        self.utilization = cfg.ewma_alpha * sample + (1 - cfg.ewma_alpha) * self.utilization
        u = self.utilization
        backlog = tel.backlog_bytes / max(tel.capacity_bytes_per_s * cfg.backlog_horizon_s, 1e-9)
        draining = 0 < tel.backlog_bytes < self._last_backlog * (1 - cfg.drain_fraction)
        self._last_backlog = tel.backlog_bytes
        causes = [
            name
            for name, hit in (
                ("egress", u >= cfg.u_high and not draining),
                ("backlog", backlog >= 1.0 and not draining),
                ("loss", tel.loss_rate >= cfg.loss_high),
                ("queue", tel.prfaas_queue_depth >= cfg.queue_high),
            )
            if hit
        ]
        calm = (
            u <= cfg.u_low
            and backlog <= cfg.backlog_low
            and tel.loss_rate <= cfg.loss_low
            and tel.prfaas_queue_depth <= cfg.queue_low
        )
        reason = "hold"
        self._cooldown = max(0, self._cooldown - 1)
        if causes and self._cooldown == 0:
            self._calm_streak = 0
            self._cooldown = cfg.raise_cooldown_ticks
            step = max(self.threshold * (cfg.raise_factor - 1), cfg.min_step_tokens)
            self.threshold = min(self.threshold + step, cfg.t_max)
            reason = f"raise:{causes[0]}"
        elif causes:
            self._calm_streak = 0
        elif calm:
            self._calm_streak += 1
            if self._calm_streak >= cfg.calm_ticks and self.threshold > self.base:
                lowered = self.threshold / cfg.lower_factor
                if lowered - self.base < cfg.min_step_tokens:
                    lowered = self.base
                self.threshold = max(lowered, self.base)
                reason = "base" if self.threshold == self.base else "lower:calm"
        else:
            self._calm_streak = 0
        if causes or u >= cfg.scarce_on:
            self.scarce = True
        elif u <= cfg.scarce_off:
            self.scarce = False
        return ShortTermDecision(self.threshold, self.scarce, u, reason)
