"""The threshold's path through a link change, read from a fluctuation run's 1 s samples.

One owner for the figures issue 12 and issue 18 judge a link change by: when t first rose after
the change, how high it went, when it was first back at its base within the change, and when it
settled at its base after the change ended. The same function reads `prfaas experiment`'s
samples (the router's t scraped from /metrics, one scrape a second, so it lags the router by up
to a scrape) and `prfaas sim --experiment`'s (the controller's t at each 1 s tick), so the two
compare like for like (`prfaas.tools.sim.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SETTLE_S = 10.0
"""After the change, t has settled once it stays at its base this long."""


@dataclass(frozen=True)
class Trajectory:
    """Seconds from the change (the first step; `settled_after_end_s` from the end of the changed
    stretch); None where it did not happen within the samples."""

    base_tokens: float
    rise_s: float | None
    peak_tokens: float
    peak_at_s: float | None
    back_at_base_s: float | None
    """First sample at or below the base after the rise, before the change ended."""
    settled_after_end_s: float | None
    """First sample after the change ended from which t stays at or below its base SETTLE_S."""


def first_raise_after(samples: list[dict[str, Any]], at_s: float) -> float | None:
    """Seconds from `at_s` to the first sample whose threshold exceeds the last one before it."""
    before = [x["threshold_tokens"] for x in samples if x["t_s"] < at_s]
    base = next((v for v in reversed(before) if v is not None), None)
    if base is None:
        return None
    return next(
        (x["t_s"] - at_s for x in samples
         if x["t_s"] >= at_s and x["threshold_tokens"] is not None and x["threshold_tokens"] > base),
        None,
    )  # fmt: skip


def trajectory(fluctuation: dict[str, Any]) -> Trajectory | None:
    """The path of t in one fluctuation document (`experiment.json`'s "fluctuation"); None when
    it has no samples before the change, or no change recorded."""
    if "cut_at_s" not in fluctuation or not fluctuation.get("samples"):
        return None
    start = float(fluctuation["cut_at_s"])
    end = start + float(fluctuation["cut_for_s"])
    path = [(float(x["t_s"]), float(x["threshold_tokens"])) for x in fluctuation["samples"]
            if x.get("threshold_tokens") is not None]  # fmt: skip
    before = [th for t, th in path if t < start]
    if not before:
        return None
    base = before[-1]
    rise = first_raise_after(fluctuation["samples"], start)
    within = [(t, th) for t, th in path if start <= t <= end]
    peak_t, peak = max(within, key=lambda p: p[1], default=(None, base))  # the first at the max
    peak_at = None if peak_t is None else peak_t - start
    back = None
    if rise is not None:
        back = next((t - start for t, th in within if t - start > rise and th <= base), None)
    after = [(t, th) for t, th in path if t >= end]
    settled = next(
        (t - end for t, th in after
         if th <= base and all(x <= base for u, x in after if t <= u <= t + SETTLE_S)
         and after[-1][0] >= t + SETTLE_S),
        None,
    )  # fmt: skip
    return Trajectory(base, rise, peak, peak_at if peak > base else None, back, settled)
