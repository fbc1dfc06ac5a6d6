"""The PrfaaS -> PD link's capacity, measured: what the short-term controller divides by.

The configured link rate is only the prior. Each tick takes the PrfaaS workers' summed egress
(bytes put on the wire per second), their summed sender backlog (KV bytes not yet on the wire) and
their summed kernel delivery rate (TCP_INFO `delivery_rate` of the KV connections that were
sending, `kvtransfer.telemetry.link_delivery_rate`), and updates one estimate:
  saturated  (backlog >= `saturated_backlog_s` of current egress, and >= `min_backlog_bytes`;
             the workers count bytes unsent in their socket buffers as backlog too):
             the link, not the offered load, limits egress, so what gets through *is* the
             capacity now -> sample = the lower of egress and the kernel's delivery rate (each
             when sampled). Lower, because each can overstate: egress while socket buffers still
             absorb writes, the delivery rate when the KV connection ends at a relay before the
             bottleneck (the experiment's `prfaas link` relays: its samples read 1-20 GB/s on a
             1 Gbit/s link). A tick that carried nothing (egress 0) measured no rate: its
             delivery rate alone may lower the estimate, never raise it (issue 12's quiet 4x
             drop run: two such ticks read the relay's 1.7-2.1 GB/s as the 125 MB/s link, and
             t fell to a quarter of t_base for the minute before the drop); and the first such
             tick after one without a backlog is a transfer handed to the sender as the tick
             ended, not a saturated link (read as a link at 1 % of its rate, it raised t on the
             healthy 1 Gbit/s link in the rerun); a second one in a row is a stall. The first
             saturated tick takes the sample at once (a cut is seen
             within a tick); within a saturated stretch a lower sample moves the estimate half
             way (one tick in which a sender paused between transfers is not a cut), a higher
             one at once (a restored link draining its backlog);
  otherwise  egress is a lower bound (the sender may be idle part of the time): egress
             sustained over `sustain_ticks` ticks that exceeds the estimate sets it to that
             egress x `lower_bound_headroom` (the link carried it without a backlog, so it has
             room above it; an estimate equal to egress would read as a full link, u = 1, and
             raise t on a link faster than configured; the next backlog measures the real
             rate). A link faster than configured shows up once the offered load exceeds the
             configured rate, and a restored link as soon as its backlog drains. An estimate
             below the configured rate also relaxes toward it by `relax_per_tick` of the gap
             each unsaturated tick: no backlog for a while is weak evidence that a cut is over,
             and the next backlog measures the link again (so a restore is seen even when
             nothing was queued to drain through it, as when t had already stopped the
             offloads). The kernel's delivery rate is no lower-bound evidence: a shaper's token
             bucket lets a burst through at line rate and the per-ack rate then reads far above
             the link (8.6x the 1 Gbit/s tbf link in the fluctuation run; 4x the configured rate,
             the old cap, in every unsaturated tick of issue 12's link-cut runs, behind the
             experiment's relays). Evidence is capped at `max_over_configured` x configured.
Timed backlogs (`CapacitySample.busy_s`, from workers that report `kv_line_buckets`) replace
the backlog at the report: a tick with at least `min_busy_s` of buckets in which a sender waited
for the line is saturated, and its sample is what every sender put on the line in the latest
second of such buckets (pooled across ticks: over one bucket a shaped line carries anything from
nothing to 2.5 times its rate, `ControlLoops._line_busy`). A backlog standing at the report but
not through a bucket is a transfer just handed over (issue 12's 2x-link run: a 10 MB hand-over in
a tick's last 0.3 s, over the tick's mean egress, read the 62 MB/s link at 14 MB/s and the
feed-forward raised t to 72K); a burst that queues for half a second and drains before the report
measures the line all the same (a 4x drop under a load the fallen link still carried was measured
only when a burst straddled a report, 9-18 s after it).
A backlog is the line's only when the senders are held below their own ceiling. When each
connection is bound by its own window (window / RTT) or send buffer, a prefill that makes KV faster
than one transfer's connections carry leaves a backlog at the sender while the line sits idle
(a MiniMax-M2.5 instance makes 60 Gbps of KV; its 4 connections with 6 MiB windows at 10 ms RTT
carry 20 Gbps); reading that as a saturated line sets the capacity to the senders' sum, the
controller raises t, fewer senders remain, the "capacity" falls with them, and offload collapses
(issue 18: offload 0.157 -> 0.014 in the 1,536-GPU projection once the simulator used this
estimator). So when the sample says how many senders had bytes waiting (`sending`; 0: unknown,
as from a worker too old to report it or a recorded log, and the test below is skipped), the estimator keeps each
tick's rate per sender over `sender_ceiling_ticks` ticks: on a line bottleneck the sum stays at
the line's ceiling however many senders share it, so the rate per sender falls as more of them
send; behind per-sender limits the sum grows with the senders and each keeps its own rate. A
backlogged tick whose rate per sender is at least `line_share_fraction` of the window's highest
is sender-bound: its egress is lower-bound evidence, as without a backlog, but without the
headroom (a backlog leaves no sign of room above what got through: a restored line draining its
backlog also gives each sender the most it got in the window, and 1.25x that would put t below
t_base). A cut shows at once: the same senders each get a fraction of what they got before. Needs the number of senders to vary
within the window (a line bottleneck with a constant count looks the same as per-sender limits).
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
    relax_per_tick: float = 0.1
    """Fraction of the gap to the configured rate an estimate below it recovers per unsaturated
    tick (half-way in about 7 ticks)."""
    lower_bound_headroom: float = 1.25
    """Unsaturated egress E proves a capacity above E; the estimate takes E x this."""
    sustain_ticks: int = 2
    """Unsaturated egress counts as evidence only at its lowest over this many ticks (a burst
    into empty socket buffers reads above the link for one sample)."""
    sender_ceiling_ticks: int = 30
    """Ticks over which the highest rate per sender (egress / `sending`) is kept."""
    min_busy_s: float = 0.2
    """A tick measures the line when it has at least this many seconds of buckets in which a
    sender waited for the line (`CapacitySample.busy_s`; one 0.2 s bucket)."""
    line_share_fraction: float = 0.8
    """A backlogged tick whose senders each carry at least this fraction of that highest rate is
    bound by the senders, not the line (a line shares each sender down as more of them send)."""


@dataclass(frozen=True)
class CapacitySample:
    """One tick's measurements, summed over the PrfaaS workers (bytes and bytes/s)."""

    egress_bytes_per_s: float
    backlog_bytes: float
    delivery_bytes_per_s: float = 0.0
    sending: float = 0.0
    """Senders (connections or peers alike, one kind throughout) with bytes waiting, on average
    over the tick; 0: unknown, and a backlog is read as the line's."""
    busy_bytes_per_s: float = 0.0
    """What the line carried while KV waited for it: every sender's bytes on the wire in the
    latest second of wall-clock buckets in which one of them waited for the line most of the
    bucket, over those buckets' time (`kvtransfer.telemetry.LineBusyMeter`,
    `ControlLoops._line_busy`)."""
    busy_s: float | None = None
    """Seconds of such buckets that completed since the last tick (0: none, so this tick
    measured nothing); None: the senders do not time it (older workers, an idle line, recorded
    logs, the simulator), and the backlog at the report is read instead."""


class LinkCapacityEstimator:
    def __init__(self, configured_bytes_per_s: float, config: LinkCapacityConfig | None = None):
        self.config = config or LinkCapacityConfig()
        self.configured = configured_bytes_per_s
        self.estimate = configured_bytes_per_s
        self.source = "configured"
        """How the estimate was last set: configured | saturated | lower_bound | relaxing."""
        self.saturated = False
        """Whether the latest sample showed the link as the bottleneck (a backlog waits)."""
        self.sender_bound = False
        """Whether the latest backlog sat at senders that each got their own ceiling."""
        self._recent_egress: list[float] = []
        self._stalled = False
        self._per_sender: list[float] = []

    def update(self, sample: CapacitySample) -> float:
        cfg = self.config
        backlog_limit = max(
            cfg.min_backlog_bytes, sample.egress_bytes_per_s * cfg.saturated_backlog_s
        )
        self._recent_egress = [*self._recent_egress, sample.egress_bytes_per_s][
            -cfg.sustain_ticks :
        ]
        at_ceiling = self._at_sender_ceiling(sample)
        if sample.busy_s is not None:  # the senders timed their backlogs: the line, measured
            waited = sample.busy_s >= cfg.min_busy_s
            self.sender_bound = waited and at_ceiling
            backlogged, handed_over = waited and not self.sender_bound, False
            now = min(sample.busy_bytes_per_s, self.configured * cfg.max_over_configured)
        else:
            self.sender_bound = sample.backlog_bytes >= backlog_limit and at_ceiling
            backlogged = sample.backlog_bytes >= backlog_limit and not self.sender_bound
            stalled = backlogged and sample.egress_bytes_per_s <= 0
            handed_over = stalled and not (self.saturated or self._stalled)
            self._stalled = stalled
            seen = [r for r in (sample.egress_bytes_per_s, sample.delivery_bytes_per_s) if r > 0]
            now = min(seen, default=0.0)
            if stalled:  # nothing carried: no rate that can raise it
                now = min(now, self.estimate)
        if backlogged and not handed_over:
            if self.saturated and now < self.estimate:
                now = 0.5 * (self.estimate + now)
            self.estimate, self.source, self.saturated = now, "saturated", True
        else:
            self.saturated = False
            carried = min(self._recent_egress)
            if len(self._recent_egress) == cfg.sustain_ticks and carried > self.estimate:
                lower = carried * (1.0 if self.sender_bound else cfg.lower_bound_headroom)
                self.estimate = min(lower, self.configured * cfg.max_over_configured)
                self.source = "lower_bound"
            elif self.estimate < self.configured:
                self.estimate += cfg.relax_per_tick * (self.configured - self.estimate)
                self.source = "relaxing"
        self.estimate = max(self.estimate, self.configured * cfg.floor_fraction)
        return self.estimate

    def _at_sender_ceiling(self, sample: CapacitySample) -> bool:
        """Whether this tick's senders each carried close to the highest rate per sender of the
        recent window (so the line did not share them down); records the tick's rate."""
        cfg = self.config
        if sample.sending <= 0 or sample.egress_bytes_per_s <= 0:
            return False
        per = sample.egress_bytes_per_s / sample.sending
        self._per_sender = [*self._per_sender, per][-cfg.sender_ceiling_ticks :]
        return per >= cfg.line_share_fraction * max(self._per_sender)
