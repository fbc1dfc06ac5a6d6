"""The threshold's path through a link change, as issues 12 and 18 judge it: the rise, the peak,
the first return to base within the change and when it settled after the change."""

from __future__ import annotations

from prfaas.tools.experiment.threshold_trajectory import SETTLE_S, trajectory
from prfaas.tools.sim.compare import trajectory_rows


def run(path: dict[float, float], cut_at: float = 10.0, cut_for: float = 20.0) -> dict:
    """A fluctuation document whose t follows `path` (t_s -> tokens), held between entries."""
    samples, level = [], 100.0
    for second in range(0, 60):
        level = path.get(float(second), level)
        samples.append({"t_s": float(second), "threshold_tokens": level})
    return {"cut_at_s": cut_at, "cut_for_s": cut_for, "samples": samples}


def test_rise_peak_return_and_settle_are_read_from_the_samples() -> None:
    # Cut at 10 s for 20 s: up at 13, 300 at 16, base at 22, up again at 25, base at 34.
    doc = run({13.0: 200.0, 16.0: 300.0, 22.0: 100.0, 25.0: 150.0, 34.0: 100.0})
    path = trajectory(doc)
    assert path is not None
    assert (path.base_tokens, path.rise_s, path.peak_tokens, path.peak_at_s) == (100, 3, 300, 6)
    assert path.back_at_base_s == 12  # first at base again within the change
    assert path.settled_after_end_s == 4  # the change ended at 30; t at base from 34 on


def test_a_flat_threshold_neither_rises_nor_returns_and_a_late_blip_delays_settling() -> None:
    path = trajectory(run({}))
    assert path is not None
    assert (path.rise_s, path.peak_at_s, path.back_at_base_s) == (None, None, None)
    assert path.settled_after_end_s == 0
    blip = trajectory(run({35.0: 120.0, 36.0: 100.0}))  # up 5-6 s after the change
    assert blip is not None and blip.settled_after_end_s == 6
    never = trajectory(run({40.0: 120.0}))  # up for good: no SETTLE_S at base afterwards
    assert never is not None and never.settled_after_end_s is None and SETTLE_S == 10


def test_the_comparison_marks_a_time_more_than_ten_seconds_apart() -> None:
    measured = {"fluctuation": run({13.0: 200.0, 22.0: 100.0})}
    simulated = {"fluctuation": run({11.0: 200.0, 29.0: 100.0, 30.0: 150.0, 45.0: 100.0})}
    rows = trajectory_rows(measured, simulated)
    by_label = {row.split(" | ")[0].lstrip("| "): row for row in rows[2:]}
    assert "| 3.00 s | 1.00 s | -2.0 s |" in by_label["rises after the change"]
    assert "**+7.0 s**" not in by_label["first back at its base, in the change"]
    assert "+7.0 s" in by_label["first back at its base, in the change"]
    assert "**+15.0 s**" in by_label["settled at its base after the change"]
