"""The PrfaaS -> PD link's capacity, measured: what the short-term controller divides by.

The configured link rate is only the prior. Each tick takes the PrfaaS workers' summed egress
(bytes put on the wire per second), their summed sender backlog (KV bytes not yet on the wire) and
their summed kernel delivery rate (TCP_INFO `delivery_rate` of the KV connections that were
sending, `kvtransfer.telemetry.link_delivery_rate`), and updates one estimate:
  saturated  (backlog >= `saturated_backlog_s` of current egress, and >= `min_backlog_bytes`;
             the workers count bytes unsent in their socket buffers as backlog too):
             the link, not the offered load, limits egress, so what gets through *is* the
             capacity now -> estimate = the lower of egress and the kernel's delivery rate (each
             when sampled; falls at once on a cut). Lower, because each can overstate: egress
             while socket buffers still absorb writes, the delivery rate when the KV connection
             ends at a relay before the bottleneck (the experiment's `prfaas link` relays: its
             samples read 1-20 GB/s on a 1 Gbit/s link);
  otherwise  egress and delivery rate are lower bounds (the sender may be idle part of the
             time) -> estimate = max(estimate, egress, delivery rate): a link faster than
             configured shows up as soon as one burst measures it, and a restored link as soon
             as offloads resume after a cut. A shaper's token bucket lets a burst through at line
             rate, and the per-ack delivery rate then reads far above the link (8.6x the 1 Gbit/s
             tbf link in the fluctuation run), so this evidence is capped at
             `max_over_configured` x the configured rate; an estimate that is still too high is
             corrected by the first backlog.
The estimate never drops below `floor_fraction` of the configured rate (no division by ~0).
Pure and synchronous; `ControlLoops.telemetry` owns one and calls `update` once per tick.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkCapacityConfig:
    saturated_backlog_s: float = 0.5
    """Backlog worth this many seconds of current egress means the link is the bottleneck."""
    min_backlog_bytes: float = 1 << 20
    """Below this the backlog is transient (a layer just handed over), never saturation."""
    floor_fraction: float = 0.01
    """Lowest estimate, as a fraction of the configured rate."""
    max_over_configured: float = 4.0
    """Cap of unsaturated (lower-bound) evidence, as a multiple of the configured rate."""


@dataclass(frozen=True)
class CapacitySample:
    """One tick's measurements, summed over the PrfaaS workers (bytes and bytes/s)."""

    egress_bytes_per_s: float
    backlog_bytes: float
    delivery_bytes_per_s: float = 0.0


class LinkCapacityEstimator:
    def __init__(self, configured_bytes_per_s: float, config: LinkCapacityConfig | None = None):
        self.config = config or LinkCapacityConfig()
        self.configured = configured_bytes_per_s
        self.estimate = configured_bytes_per_s
        self.source = "configured"
        """How the estimate was last set: configured | saturated | lower_bound."""

    def update(self, sample: CapacitySample) -> float:
        cfg = self.config
        backlog_limit = max(
            cfg.min_backlog_bytes, sample.egress_bytes_per_s * cfg.saturated_backlog_s
        )
        if sample.backlog_bytes >= backlog_limit:
            seen = [r for r in (sample.egress_bytes_per_s, sample.delivery_bytes_per_s) if r > 0]
            self.estimate, self.source = min(seen, default=0.0), "saturated"
        else:
            lower = min(
                max(sample.egress_bytes_per_s, sample.delivery_bytes_per_s),
                self.configured * cfg.max_over_configured,
            )
            if lower > self.estimate:
                self.estimate, self.source = lower, "lower_bound"
        self.estimate = max(self.estimate, self.configured * cfg.floor_fraction)
        return self.estimate
