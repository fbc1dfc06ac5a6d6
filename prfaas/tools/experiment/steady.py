"""Steady state of one load point from the TTFT trend and the backlog (issue 12 item 3).

The completion-ratio test (sweep.py) depends on its window: with an end-to-end latency of ~30 s a
60-120 s point leaves a window of a minute or two, and the ratio moves by ±0.05 with nothing but
the order of long and short requests. This test looks at what a growing backlog does instead:
  1. TTFT trend: the mean TTFT of the last third of sends (by send time) is at most
     `max_ttft_growth` × the mean of the middle third plus one decode step (the first third
     is the warm-up: queues fill from empty). A backlog that grows adds its wait to every later
     request, so the last third drifts away from the middle one; a stable queue does not.
  2. Backlog at the last send: requests sent but without a first token then, at most
     `max_backlog_factor` × the number Little's law gives for a stable queue (offered rate ×
     mean TTFT of the middle third), plus `backlog_slack` requests.
Both must hold, and no request may fail (a 429 counts). The test reads send times, TTFTs and
end times only, so its verdict does not hinge on the point's length; longer points make the two
thirds' means less noisy (BENCHMARKS.md states the criterion and the lengths used).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from prfaas.tools.loadgen import Results


@dataclass(frozen=True)
class SteadyCriterion:
    max_ttft_growth: float = 1.25
    max_backlog_factor: float = 1.5
    backlog_slack: int = 3


def steady_state(
    results: Results, offered_rps: float, decode_step_s: float, crit: SteadyCriterion
) -> dict[str, Any]:
    """The two checks' inputs and verdicts for one point."""
    recs = sorted(results.records, key=lambda r: r.start_s)
    if len(recs) < 9:
        return {"steady": False, "why": "fewer than 9 requests"}
    third = len(recs) // 3
    middle, last = recs[third : 2 * third], recs[2 * third :]

    def mean_ttft(rs: list[Any]) -> float | None:
        xs = [r.ttft_s for r in rs if r.ok and r.ttft_s is not None]
        return float(np.mean(xs)) if xs else None

    ttft_mid, ttft_last = mean_ttft(middle), mean_ttft(last)
    last_send = recs[-1].start_s
    # Served requests sent by the last send without a first token at that moment (a failed
    # one is judged by the failure check, not counted as queued).
    backlog = sum(
        1 for r in recs if r.ok and (r.ttft_s is None or r.start_s + r.ttft_s > last_send)
    )
    allowed = None
    trend_ok = backlog_ok = False
    if ttft_mid is not None and ttft_last is not None:
        trend_ok = ttft_last <= crit.max_ttft_growth * ttft_mid + decode_step_s
        allowed = crit.max_backlog_factor * offered_rps * ttft_mid + crit.backlog_slack
        backlog_ok = backlog <= allowed
    failed = sum(1 for r in recs if not r.ok)
    return {
        "ttft_middle_third_s": ttft_mid,
        "ttft_last_third_s": ttft_last,
        "backlog_at_last_send": backlog,
        "backlog_allowed": allowed,
        "ttft_trend_ok": trend_ok,
        "backlog_ok": backlog_ok,
        "failed": failed,
        "steady": trend_ok and backlog_ok and failed == 0,
    }
