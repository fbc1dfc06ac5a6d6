"""Measured link capacity (control/link_capacity.py) and the short-term law fed by it, on a
scripted link: a cut is seen within seconds, a link faster than configured is used."""

from __future__ import annotations

import math

import pytest

from prfaas.router.control import (
    CapacitySample,
    LinkCapacityEstimator,
    LinkTelemetry,
    ShortTermController,
)

CONFIGURED = 100e6
BASE_T = 4000.0
MIB = 1 << 20


def demand(t: float, at_base: float = 80e6) -> float:
    """Offered PrfaaS egress at threshold t (falls as t rises: fewer, longer offloads)."""
    return at_base * (BASE_T / max(t, BASE_T)) ** 2


def test_timed_backlogs_ignore_a_hand_over_and_measure_a_burst() -> None:
    """Issue 12's 2x-link run: a 10.5 MB hand-over standing at the report, over the tick's mean
    egress of 14.4 MB/s, read the 62.5 MB/s link at 14.4 MB/s (the report's backlog, below).
    Timed by the senders it queued 0.1 s: no measure of the line. A burst that queued 0.4 s and
    drained before the report measures it."""
    handed_over = CapacitySample(14.4e6, 10.5e6, 592e6)
    assert LinkCapacityEstimator(CONFIGURED).update(handed_over) == 14.4e6  # the report's reading
    est = LinkCapacityEstimator(CONFIGURED)
    timed = CapacitySample(14.4e6, 10.5e6, 592e6, busy_bytes_per_s=60e6, busy_s=0.1)
    assert est.update(timed) == CONFIGURED and not est.saturated
    burst = CapacitySample(20e6, 0.0, 0.0, busy_bytes_per_s=31e6, busy_s=0.4)
    assert est.update(burst) == 31e6 and est.saturated and est.source == "saturated"
    # Within a measured stretch a lower sample moves it half way; a higher one at once.
    assert est.update(CapacitySample(20e6, 0.0, busy_bytes_per_s=21e6, busy_s=0.5)) == 26e6
    assert est.update(CapacitySample(90e6, 0.0, busy_bytes_per_s=95e6, busy_s=0.3)) == 95e6
    # Evidence is capped as unsaturated evidence is.
    assert est.update(CapacitySample(0.0, 0.0, busy_bytes_per_s=9e9, busy_s=0.3)) == 4 * CONFIGURED


def test_estimate_falls_at_once_under_backlog_and_rises_on_sustained_egress() -> None:
    est = LinkCapacityEstimator(CONFIGURED)
    # Unsaturated traffic below the configured rate says nothing about a lower capacity.
    assert est.update(CapacitySample(40e6, 0.2 * MIB, 45e6)) == CONFIGURED
    # A backlog of seconds at 10 MB/s: the link delivers 10 MB/s, whatever was configured.
    assert est.update(CapacitySample(10e6, 30 * MIB, 11e6)) == 10e6
    assert est.source == "saturated" and est.saturated
    # Within the saturated stretch a lower sample moves it half way, a higher one at once.
    assert est.update(CapacitySample(4e6, 30 * MIB, 0.0)) == 7e6
    assert est.update(CapacitySample(12e6, 30 * MIB, 0.0)) == 12e6
    # A transient backlog (under a MiB) is not saturation: the estimate relaxes a tenth of the
    # way back to the configured rate per tick (a cut is assumed over unless a backlog says not).
    assert est.update(CapacitySample(9e6, 0.5 * MIB, 0.0)) == pytest.approx(20.8e6)
    assert not est.saturated and est.source == "relaxing"
    # The kernel's delivery rate is no evidence (a burst through a shaper reads at line rate).
    before = est.estimate
    assert est.update(CapacitySample(5e6, 0, 1.07e9)) > before  # relaxing only
    assert est.estimate < 0.5 * CONFIGURED
    # Egress above the configured rate, sustained two ticks: a faster link, with headroom.
    est.update(CapacitySample(150e6, 0, 0.0))
    assert est.update(CapacitySample(160e6, 0, 0.0)) == pytest.approx(150e6 * 1.25)
    assert est.source == "lower_bound"
    # Capped at 4x the configured rate.
    est.update(CapacitySample(900e6, 0, 0.0))
    assert est.update(CapacitySample(900e6, 0, 0.0)) == 4 * CONFIGURED
    # Under a backlog what gets through is the capacity: the lower of egress (overstated while
    # socket buffers absorb writes) and the delivery rate (overstated behind a relay).
    assert est.update(CapacitySample(12.5e6, 40 * MIB, 30e6)) == 12.5e6
    assert est.update(CapacitySample(9e6, 40 * MIB, 6.0e9)) == pytest.approx(10.75e6)
    # Never below 1 % of configured (a link that carries nothing for two ticks under a backlog
    # reads ~0; the first such tick is a transfer just handed to the sender).
    est = LinkCapacityEstimator(CONFIGURED)
    assert est.update(CapacitySample(0.0, 10 * MIB, 0.0)) == CONFIGURED
    assert est.update(CapacitySample(0.0, 10 * MIB, 0.0)) == CONFIGURED * 0.01


def test_a_tick_that_carried_nothing_measures_no_rate() -> None:
    """Recorded in issue 12's quiet 4x-drop runs (router.log, 125 MB/s configured): backlogged
    ticks with no egress. Taken as the link's rate, the relay's per-ack delivery rate (2.08 GB/s)
    read the link as 16x faster and t fell to a quarter of t_base; with no delivery rate either,
    the link read as dead (1 % of its rate) and t rose on the healthy link. Both were a transfer
    handed to the sender as the tick ended; only a second tick in a row is a stall."""
    configured = 125e6
    est = LinkCapacityEstimator(configured)
    est.update(CapacitySample(31_678_005, 0, 2_078_659_071))
    assert est.update(CapacitySample(0, 3_510_272, 2_078_659_071)) == configured
    assert not est.saturated
    ctl = ShortTermController(19072)
    ctl.update(LinkTelemetry(0, est.estimate, configured_bytes_per_s=configured))
    assert ctl.floor == 19072
    est.update(CapacitySample(7_791_330, 0, 9_716_174_226))
    assert est.update(CapacitySample(0, 5_265_408, 0)) == configured  # not a dead link
    # A second tick with nothing carried: a stall, measured by the delivery rate when it is
    # lower (the lower of the two), never raised by it.
    assert est.update(CapacitySample(0, 100 * MIB, 8.8e6)) == 8.8e6 and est.saturated
    assert est.update(CapacitySample(0, 100 * MIB, 2e9)) == 8.8e6
    # Within a saturated stretch a tick with nothing carried counts at once (no hand-over).
    cut = LinkCapacityEstimator(configured)
    assert cut.update(CapacitySample(12.5e6, 40 * MIB, 30e6)) == 12.5e6
    assert cut.update(CapacitySample(0, 40 * MIB, 0)) == pytest.approx(6.25e6)


class ScriptedLink:
    """One tick = one second. KV beyond the link's rate waits in the senders (bounded at 60 s
    of the configured rate); while anything is sent the kernel measures the true rate."""

    def __init__(self, capacity: float, measured: bool, offered_at_base: float = 80e6) -> None:
        self.capacity, self.backlog, self.offered_at_base = capacity, 0.0, offered_at_base
        self.estimator = LinkCapacityEstimator(CONFIGURED) if measured else None
        self.ctl = ShortTermController(BASE_T)

    def tick(self) -> float:
        offered = demand(self.ctl.threshold, self.offered_at_base)
        sent = min(offered + self.backlog, self.capacity)
        self.backlog = min(self.backlog + offered - sent, 60 * CONFIGURED)
        delivery = self.capacity if sent > 0 else 0.0
        capacity = CONFIGURED
        if self.estimator is not None:
            capacity = self.estimator.update(CapacitySample(sent, self.backlog, delivery))
        self.ctl.update(LinkTelemetry(sent, capacity, backlog_bytes=self.backlog))
        return self.ctl.threshold


def test_cut_to_ten_percent_raises_threshold_within_five_seconds() -> None:
    link = ScriptedLink(CONFIGURED, measured=True)
    assert {link.tick() for _ in range(30)} == {BASE_T}
    link.capacity = 0.1 * CONFIGURED
    history = [link.tick() for _ in range(60)]
    first_raise = next(i for i, t in enumerate(history) if t > BASE_T)
    assert first_raise < 5
    assert demand(history[-1]) <= 0.1 * CONFIGURED  # settled where the cut link carries it
    # The same cut judged against the configured capacity is never seen: what t offers (0.8 of
    # the configured rate) looks like it fits, and the backlog just grows.
    blind = ScriptedLink(CONFIGURED, measured=False)
    [blind.tick() for _ in range(30)]
    blind.capacity = 0.1 * CONFIGURED
    assert {blind.tick() for _ in range(60)} == {BASE_T}
    assert blind.backlog > 30 * CONFIGURED
    # Restored: the threshold comes back to base.
    link.capacity = CONFIGURED
    assert [link.tick() for _ in range(120)][-1] == BASE_T


def test_link_twice_as_fast_as_configured_is_used() -> None:
    """Offered 1.5x the configured rate on a link of 2x: judged against the configuration the
    controller would raise t and keep requests local; measured, it stays at base and sends it."""
    fast = ScriptedLink(2 * CONFIGURED, measured=True, offered_at_base=150e6)
    assert {fast.tick() for _ in range(60)} == {BASE_T}
    assert fast.backlog == 0.0
    blind = ScriptedLink(2 * CONFIGURED, measured=False, offered_at_base=150e6)
    assert max(blind.tick() for _ in range(60)) > BASE_T
    # And a threshold raised earlier falls back to base on the fast link.
    fast.ctl.threshold = 4 * BASE_T
    assert [fast.tick() for _ in range(120)][-1] == BASE_T


def test_a_draining_backlog_is_not_pressure() -> None:
    """The link is busy and a backlog remains, but it shrinks every tick: offered load is
    already below capacity, so t holds instead of climbing."""
    ctl = ShortTermController(BASE_T)
    for backlog in (40 * MIB, 30 * MIB, 20 * MIB, 10 * MIB):
        d = ctl.update(LinkTelemetry(10e6, 10e6, backlog_bytes=backlog, link_saturated=True))
    assert ctl.threshold == BASE_T * 1.25  # only the first tick (40 MiB arriving) raised
    assert d.reason == "hold"
    d = ctl.update(LinkTelemetry(10e6, 10e6, backlog_bytes=60 * MIB, link_saturated=True))
    assert d.reason.startswith("raise")  # growing again


def test_backlog_at_senders_at_their_own_ceiling_is_not_a_saturated_line() -> None:
    """Per-sender limits vs the line (issue 18): senders that each keep their own rate however
    many send are bound by themselves; a line shares them down as more send, or when it is cut."""
    est = LinkCapacityEstimator(CONFIGURED)
    # 5, then 10, then 20 senders at 2 MB/s each, a growing backlog: the sum grows with them.
    for n in (5, 10, 20):
        assert est.update(CapacitySample(2e6 * n, 100 * MIB, 2e6 * n, sending=n)) == CONFIGURED
        assert not est.saturated and est.sender_bound
    # Without the count the same backlog is read as the line's, as before.
    blind = LinkCapacityEstimator(CONFIGURED)
    assert blind.update(CapacitySample(40e6, 100 * MIB, 40e6)) == 40e6 and blind.saturated
    # A line bottleneck: twice the senders, the same sum (each gets half its ceiling).
    assert est.update(CapacitySample(40e6, 100 * MIB, 40e6, sending=40)) == 40e6
    assert est.saturated and not est.sender_bound
    # A cut: the same senders each get 30 % of what they got.
    cut = LinkCapacityEstimator(CONFIGURED)
    for _ in range(10):
        cut.update(CapacitySample(40e6, 100 * MIB, 40e6, sending=20))
    assert cut.update(CapacitySample(12e6, 100 * MIB, 12e6, sending=20)) == 12e6
    assert cut.saturated
    # Restored while the backlog drains: each sender is back at its highest rate and the line
    # carries 40 MB/s. That proves 40 MB/s, not the headroom above it that an unqueued link
    # would (1.25 x 40 = 50 MB/s would read as a link faster than measured and lower t).
    cut.update(CapacitySample(40e6, 100 * MIB, 40e6, sending=20))
    assert cut.update(CapacitySample(40e6, 100 * MIB, 40e6, sending=20)) == 40e6
    assert cut.sender_bound and cut.source == "lower_bound"


class SenderLimitedLink:
    """One tick = one second. Each offload streams its KV while its prefill makes it at 3x what
    one sender carries (`per_sender` bytes/s: window / RTT of its connections), so every offload
    leaves a backlog at its sender while the line has room; the line shares `capacity` between
    the senders with bytes waiting (each gets min(per_sender, capacity / n))."""

    def __init__(self, capacity: float, count_senders: bool, per_sender: float = 2e6) -> None:
        self.capacity, self.per_sender, self.count_senders = capacity, per_sender, count_senders
        self.transfers: list[list[float]] = []  # [supplied, sent, total] per offload
        self.estimator = LinkCapacityEstimator(CONFIGURED)
        self.ctl = ShortTermController(BASE_T)
        self._arrivals = 0.0
        self._ticks = 0

    def tick(self) -> float:
        size = 6 * self.per_sender  # 2 s of prefill at 3x the sender's rate
        self._ticks += 1
        burst = 1.0 + 0.15 * math.sin(self._ticks / 3)  # arrivals come and go (<= 92 MB/s)
        offered = demand(self.ctl.threshold) * burst
        self._arrivals += offered / size
        while self._arrivals >= 1:
            self._arrivals -= 1
            self.transfers.append([0.0, 0.0, size])
        for tr in self.transfers:
            tr[0] = min(tr[2], tr[0] + 3 * self.per_sender)
        waiting = [tr for tr in self.transfers if tr[0] > tr[1]]
        share = min(self.per_sender, self.capacity / len(waiting)) if waiting else 0.0
        sent = 0.0
        for tr in waiting:
            step = min(share, tr[0] - tr[1])
            tr[1] += step
            sent += step
        self.transfers = [tr for tr in self.transfers if tr[1] < tr[2]]
        backlog = sum(tr[0] - tr[1] for tr in self.transfers)
        committed = sum(tr[2] - tr[1] for tr in self.transfers)
        n = len(waiting) if self.count_senders else 0
        capacity = self.estimator.update(CapacitySample(sent, backlog, sent, sending=n))
        self.ctl.update(
            LinkTelemetry(sent, capacity, backlog_bytes=backlog, committed_bytes=committed,
                          offered_bytes_per_s=offered, link_saturated=self.estimator.saturated,
                          sender_bound=self.estimator.sender_bound)
        )  # fmt: skip
        return self.ctl.threshold


def test_per_sender_limits_do_not_collapse_offload() -> None:
    """The MiniMax-M2.5 projection's collapse (issue 18) on a scripted link: the line has room
    for what t offers at base (80 of 100 MB/s), but each offload's sender carries a third of what
    its prefill makes. Read as a saturated line, the backlog sets the capacity to the senders'
    sum (what t lets through), so any tick offering more than the last one carried raises t, and
    t never steps down: the senders keep a backlog at every t, so the link is never calm.
    Told the senders' count, the estimator sees each at its own ceiling and t stays at base."""
    blind = SenderLimitedLink(CONFIGURED, count_senders=False)
    history = [blind.tick() for _ in range(60)]
    assert min(history[5:]) > BASE_T  # the old reading: raised at once, never back to base
    assert blind.estimator.estimate < 0.8 * CONFIGURED and blind.estimator.saturated
    link = SenderLimitedLink(CONFIGURED, count_senders=True)
    assert {link.tick() for _ in range(60)} == {BASE_T}
    # A real cut on the same link is still seen within five seconds.
    link.capacity = 0.3 * CONFIGURED
    history = [link.tick() for _ in range(30)]
    assert next(i for i, t in enumerate(history) if t > BASE_T) < 5


@pytest.mark.parametrize("sender_bound", [True, False])
def test_a_sender_bound_backlog_lets_t_come_back_down(sender_bound: bool) -> None:
    """Issue 18's MiniMax-M2.5 projection after the estimator fix: t rose once as egress neared
    the line, then the senders' own backlog (each offload's connections carry a third of what
    its prefill makes) read as pressure at every t: never calm, t never back to base. A backlog
    the estimator calls sender-bound is no pressure on the line, so t steps down once egress
    leaves room on it."""
    ctl = ShortTermController(BASE_T)
    near_full = LinkTelemetry(0.95 * CONFIGURED, CONFIGURED)
    while ctl.update(near_full).reason != "raise:egress":
        pass
    raised = ctl.threshold
    assert raised > BASE_T
    senders = LinkTelemetry(0.5 * CONFIGURED, CONFIGURED, backlog_bytes=400 * MIB,
                            committed_bytes=1200 * MIB, offered_bytes_per_s=0.5 * CONFIGURED,
                            sender_bound=sender_bound)  # fmt: skip
    final = [ctl.update(senders) for _ in range(60)][-1]
    if sender_bound:
        assert final.threshold == BASE_T
    else:  # the old reading: 12 s of committed KV on an idle half of the line holds t
        assert final.threshold == raised
