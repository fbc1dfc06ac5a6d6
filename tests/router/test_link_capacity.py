"""Measured link capacity (control/link_capacity.py) and the short-term law fed by it, on a
scripted link: a cut is seen within seconds, a link faster than configured is used."""

from __future__ import annotations

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


def test_estimate_falls_at_once_under_backlog_and_rises_on_lower_bounds() -> None:
    est = LinkCapacityEstimator(CONFIGURED)
    # Unsaturated traffic below the configured rate says nothing about a lower capacity.
    assert est.update(CapacitySample(40e6, 0.2 * MIB, 45e6)) == CONFIGURED
    # A backlog of seconds at 10 MB/s: the link delivers 10 MB/s, whatever was configured.
    assert est.update(CapacitySample(10e6, 30 * MIB, 11e6)) == 10e6
    assert est.source == "saturated"
    # A transient backlog (under a MiB) is not saturation.
    assert est.update(CapacitySample(9e6, 0.5 * MIB, 0.0)) == 10e6
    # One burst measured at 200 MB/s: the link is at least that fast.
    assert est.update(CapacitySample(20e6, 0, 200e6)) == 200e6
    assert est.source == "lower_bound"
    # A shaper's burst read at line rate counts for at most 4x the configured rate.
    assert est.update(CapacitySample(20e6, 0, 1.07e9)) == 4 * CONFIGURED
    # Under a backlog what gets through is the capacity: the lower of egress (overstated while
    # socket buffers absorb writes) and the delivery rate (overstated behind a relay).
    assert est.update(CapacitySample(30e6, 40 * MIB, 12.5e6)) == 12.5e6
    assert est.update(CapacitySample(9e6, 40 * MIB, 6.0e9)) == 9e6
    assert est.update(CapacitySample(8e6, 40 * MIB, 0.0)) == 8e6
    # Never below 1 % of configured (an idle link sampled under backlog reads ~0).
    assert est.update(CapacitySample(0.0, 10 * MIB, 0.0)) == CONFIGURED * 0.01


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
    # The same cut judged against the configured capacity is seen later (the backlog must
    # first reach two seconds of the *configured* rate).
    blind = ScriptedLink(CONFIGURED, measured=False)
    [blind.tick() for _ in range(30)]
    blind.capacity = 0.1 * CONFIGURED
    blind_history = [blind.tick() for _ in range(60)]
    assert next(i for i, t in enumerate(blind_history) if t > BASE_T) > first_raise
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
    already below capacity, so t holds instead of climbing (loss still raises)."""
    ctl = ShortTermController(BASE_T)
    for backlog in (40 * MIB, 30 * MIB, 20 * MIB, 10 * MIB):
        d = ctl.update(LinkTelemetry(10e6, 10e6, backlog_bytes=backlog))
    assert ctl.threshold == BASE_T * 1.25  # only the first tick (nothing to compare with) raised
    assert d.reason == "hold"
    d = ctl.update(LinkTelemetry(10e6, 10e6, backlog_bytes=12 * MIB))  # growing again
    assert d.reason.startswith("raise")
