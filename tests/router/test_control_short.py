"""Short-term controller against a scripted link whose egress follows the planner's model."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.planner.profiles import PrefillProfile
from prfaas.planner.workload import TruncatedLogNormal
from prfaas.router.control import LinkTelemetry, ShortTermController

LENGTHS = TruncatedLogNormal(9.0, 1.0, 128, 65536)
PROFILE = PrefillProfile(
    "syn", np.array([0.0, 65536.0]), np.array([0.1, 66.0]), np.array([1e5, 1e5 + 65536e3])
)
ARRIVAL_RPS = 5.0
BASE_T = 4000.0


def p_of(t: float) -> float:
    return float(LENGTHS.split(np.array([t])).p[0])


def demand(t: float) -> float:
    """Offered PrfaaS egress at threshold t: Λ · p(t) · S_kv(l_long(t))."""
    split = LENGTHS.split(np.array([t]))
    if split.p[0] == 0:
        return 0.0
    return ARRIVAL_RPS * float(split.p[0]) * float(PROFILE.s_kv(split.l_long[0]))


def run_phase(ctl: ShortTermController, capacity: float, ticks: int, state: dict) -> list[float]:
    """Tick the controller on a link of `capacity`; a backlog builds when demand exceeds it."""
    history = []
    for _ in range(ticks):
        d = demand(ctl.threshold)
        # PrfaaS queues are bounded: beyond two ticks of backlog the router keeps requests local.
        state["backlog"] = min(max(0.0, state["backlog"] + d - capacity), 2 * capacity)
        sent = min(d + state["backlog"], capacity)
        queue = state["backlog"] / max(demand(BASE_T) / ARRIVAL_RPS, 1.0)
        ctl.update(LinkTelemetry(sent, capacity, prfaas_queue_depth=queue))
        history.append(ctl.threshold)
    return history


def test_squeeze_raises_threshold_and_recovery_returns_it() -> None:
    normal = 4.0 * demand(BASE_T)
    ctl, state = ShortTermController(BASE_T), {"backlog": 0.0}
    steady = run_phase(ctl, normal, 40, state)
    assert set(steady) == {BASE_T}
    assert not ctl.scarce

    squeezed = 0.4 * demand(BASE_T)
    hist = run_phase(ctl, squeezed, 150, state)
    assert ctl.threshold > BASE_T
    assert ctl.scarce
    assert p_of(ctl.threshold) < p_of(BASE_T)  # offloads fall
    assert demand(ctl.threshold) <= squeezed  # the link is no longer oversubscribed
    assert len(set(hist[-30:])) == 1  # settled, no oscillation

    hist = run_phase(ctl, normal, 150, state)
    assert ctl.threshold == BASE_T
    assert not ctl.scarce
    assert len(set(hist[-30:])) == 1
    assert all(b <= a for a, b in zip(hist, hist[1:], strict=False))  # monotone way back


@pytest.mark.parametrize(
    ("egress", "loss", "queue", "reason", "moves"),
    [
        (0.8, 0.0, 0.0, "hold", False),  # hysteresis band: hold forever
        (0.95, 0.0, 0.0, "raise:egress", True),
        (0.5, 0.05, 0.0, "raise:loss", True),
        (0.5, 0.0, 20.0, "raise:queue", True),
        (0.5, 0.0, 0.0, "hold", False),  # calm at base: nothing to lower
    ],
)
def test_each_signal(egress, loss, queue, reason, moves) -> None:
    ctl = ShortTermController(BASE_T)
    decisions = [ctl.update(LinkTelemetry(egress, 1.0, queue, loss)) for _ in range(100)]
    assert (decisions[-1].threshold > BASE_T) == moves
    assert decisions[-1].reason == reason or (moves and decisions[-1].threshold == ctl.config.t_max)
    if not moves:
        assert {d.threshold for d in decisions} == {BASE_T}


def test_zero_base_can_rise_and_set_base_floors() -> None:
    ctl = ShortTermController(0.0)
    assert [ctl.update(LinkTelemetry(1.0, 1.0)) for _ in range(6)][-1].threshold > 0
    ctl.set_base(10_000.0)
    assert ctl.threshold == 10_000.0
    for _ in range(50):
        ctl.update(LinkTelemetry(0.0, 1.0))
    assert ctl.threshold == 10_000.0


def test_sender_backlog_raises_the_threshold_when_the_link_is_slower_than_configured() -> None:
    """A cut link: goodput (hence utilisation of the *configured* capacity) falls, so egress
    alone would read as calm; the KV backlog in the PrfaaS senders is the pressure signal."""
    capacity = 1e8
    ctl = ShortTermController(BASE_T)
    steady = LinkTelemetry(0.3 * capacity, capacity)
    assert all(ctl.update(steady).threshold == BASE_T for _ in range(5))
    # Cut: egress drops to a tenth, 5 s of configured capacity waits in the senders.
    cut = LinkTelemetry(0.03 * capacity, capacity, backlog_bytes=5 * capacity)
    decisions = [ctl.update(cut) for _ in range(6)]
    assert decisions[0].reason == "raise:backlog" and decisions[-1].threshold > BASE_T
    # Restored and drained: calm again, t returns to its base.
    recovered = LinkTelemetry(0.3 * capacity, capacity, backlog_bytes=0.0)
    for _ in range(60):
        last = ctl.update(recovered)
    assert last.threshold == BASE_T


def cut_tick(offered: float, backlog: float, committed: float, wait: float = 0.0) -> LinkTelemetry:
    """One second on a link cut to 10 MB/s that is saturated: egress = capacity."""
    return LinkTelemetry(10e6, 10e6, backlog_bytes=backlog, committed_bytes=committed,
                         offered_bytes_per_s=offered, link_saturated=True, local_wait_s=wait)  # fmt: skip


def test_threshold_stops_rising_once_what_is_committed_no_longer_grows() -> None:
    """Issue 12's diagnosis: on a cut link prefills already running on PrfaaS keep feeding the
    senders' backlog after t has stopped new offloads, and u stays ~1 while any backlog exists;
    judged by those, t climbed every cooldown (to 433K tokens). Judged by the KV newly committed,
    t rises while offloads still outpace the link and holds once they do not."""
    ctl = ShortTermController(BASE_T)
    backlog, committed, raises = 20e6, 300e6, []
    for tick in range(60):
        offered = 40e6 if tick < 6 else 0.0  # t rose past every arriving prompt after 6 s
        committed += offered - 10e6
        backlog += 5e6  # running prefills still produce KV faster than the cut link drains it
        d = ctl.update(cut_tick(offered, backlog, committed))
        raises += [tick] if d.reason.startswith("raise") else []
    assert raises and raises[0] == 0  # seen at the first tick
    assert max(raises) < 12  # and not after the offloads stopped (plus the EWMA's memory)
    assert ctl.threshold <= BASE_T * 1.25**3
    # The same ticks without the router's count (the old signals): t keeps climbing.
    blind = ShortTermController(BASE_T)
    backlog = 20e6
    for _ in range(60):
        backlog += 5e6
        blind.update(LinkTelemetry(10e6, 10e6, backlog_bytes=backlog, link_saturated=True))
    assert blind.threshold > 50 * BASE_T


def test_long_local_queues_cap_the_threshold_and_then_lower_it() -> None:
    """t does not rise while the local PD-P workers are predicted to wait 40 % of their budget on
    average, and falls while they wait 60 % of it, link pressure or not: a long prompt queued
    behind a slow link on PrfaaS is served late, one refused by a full local queue not at all."""
    ctl = ShortTermController(BASE_T)
    budget = ctl.config.local_wait_budget_s
    for _ in range(10):
        d = ctl.update(cut_tick(40e6, 50e6, 200e6, wait=0.5 * budget))
    assert ctl.threshold == BASE_T and d.reason == "hold"
    ctl.threshold = 8 * BASE_T
    reasons = [ctl.update(cut_tick(40e6, 50e6, 200e6, wait=0.7 * budget)).reason for _ in range(30)]
    assert reasons[0] == "lower:local" and ctl.threshold == BASE_T and reasons[-1] == "hold"


def test_a_link_measured_faster_than_configured_lets_the_threshold_fall_below_base() -> None:
    ctl = ShortTermController(BASE_T)
    fast = LinkTelemetry(50e6, 250e6, configured_bytes_per_s=100e6)
    history = [ctl.update(fast) for _ in range(20)]
    assert ctl.threshold == pytest.approx(BASE_T * 100 / 250) and history[-1].reason == "hold"
    assert all(b.threshold <= a.threshold for a, b in zip(history, history[1:], strict=False))
    # Never below a quarter of base, however fast.
    for _ in range(20):
        ctl.update(LinkTelemetry(50e6, 2e9, configured_bytes_per_s=100e6))
    assert ctl.threshold == BASE_T / 4
    # Back to the configured speed: t returns to base at once.
    d = ctl.update(LinkTelemetry(50e6, 100e6, configured_bytes_per_s=100e6))
    assert d.threshold == BASE_T and d.reason == "floor"
