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
