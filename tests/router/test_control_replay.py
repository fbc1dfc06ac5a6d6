"""The short-term law replayed on recorded telemetry: the router's per-tick inputs and outputs
from a fluctuation run (tests/router/data/fluctuation_telemetry.txt, `link telemetry` lines of its
router.log, recorded before the router counted the KV it commits to the link). The current capacity
estimator and law, fed the recorded raw samples, raise t within 5 s of the cut."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prfaas.router.control import (
    CapacitySample,
    LinkCapacityEstimator,
    LinkTelemetry,
    ShortTermController,
)

DATA = Path(__file__).parent / "data" / "fluctuation_telemetry.txt"
BASE_T = 19072.0
CONFIGURED = 1e9 / 8  # the run's 1 Gbit/s link
CUT_EARLIEST = 4 * 3600 + 27 * 60 + 55.8  # 04:27:55.8, router clock (see the file's header)
CUT_LATEST = CUT_EARLIEST + 1.8


@dataclass(frozen=True)
class Tick:
    t_s: float
    egress: float
    backlog: float
    delivery: float
    depth: float
    loss: float
    capacity: float
    u: float
    threshold: float
    reason: str
    recorded: bool = True


def ticks() -> list[Tick]:
    """Recorded ticks, with the unrecorded ones between them (nothing on the link) filled in."""
    rows = []
    for line in DATA.read_text().splitlines():
        if line.startswith("#"):
            continue
        f = line.split()
        rows.append(Tick(*map(float, f[:9]), f[9]))  # type: ignore[arg-type]
    out: list[Tick] = []
    for prev, row in zip([None, *rows], rows, strict=False):
        if prev is not None:
            for k in range(1, round(row.t_s - prev.t_s)):
                out.append(Tick(prev.t_s + k, 0, 0, 0, 0, 0, prev.capacity, 0, BASE_T, "", False))
        out.append(row)
    return out


def test_measured_capacity_raises_t_within_five_seconds_of_the_cut() -> None:
    est, ctl = LinkCapacityEstimator(CONFIGURED), ShortTermController(BASE_T)
    first_raise, during = None, []
    for tick in ticks():
        capacity = est.update(CapacitySample(tick.egress, tick.backlog, tick.delivery))
        decision = ctl.update(LinkTelemetry(tick.egress, capacity, tick.depth, tick.loss,
                                            tick.backlog))  # fmt: skip
        if decision.reason.startswith("raise") and first_raise is None:
            first_raise = tick.t_s
        if CUT_LATEST + 5 < tick.t_s < CUT_EARLIEST + 60 and est.source == "saturated":
            during.append(capacity)
    assert first_raise is not None and first_raise > CUT_EARLIEST  # nothing before the cut
    assert first_raise - CUT_EARLIEST <= 5.0
    # Saturated samples in the cut measure the 0.1 Gbit/s link, not the configured 1 Gbit/s.
    during.sort()
    assert during and during[len(during) // 2] < 0.2 * CONFIGURED
