"""Measured link capacity (control/link_capacity.py) and the short-term law fed by it, on a
scripted link: a cut is seen within seconds, a link faster than configured is used."""

from __future__ import annotations

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
    # Never below 1 % of configured (an idle link sampled under backlog reads ~0).
    est = LinkCapacityEstimator(CONFIGURED)
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
