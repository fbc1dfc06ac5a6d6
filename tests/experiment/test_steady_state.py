"""The window-free steady-state test (prfaas/tools/experiment/steady.py): a stable queue passes
whatever the point's length; a growing backlog, or a single refused request, fails it."""

from __future__ import annotations

from prfaas.tools.experiment.steady import SteadyCriterion, steady_state
from prfaas.tools.loadgen import Results
from prfaas.tools.loadgen.client import RequestRecord

RATE = 2.0
STEP = 0.8


def _results(ttft_of, n: int = 120, status_of=lambda i: 200) -> Results:  # noqa: ANN001
    recs = []
    for i in range(n):
        start = i / RATE
        status = status_of(i)
        ttft = ttft_of(start) if status == 200 else None
        recs.append(RequestRecord(i, start, start, ttft_s=ttft,
                                  e2e_s=None if ttft is None else ttft + 25.0, status=status,
                                  error=None if status == 200 else f"HTTP {status}"))  # fmt: skip
    return Results({}, recs)


def test_stable_queue_is_steady_for_short_and_long_points() -> None:
    for n in (60, 600):
        out = steady_state(_results(lambda t: 5.0 + (t % 7) / 7, n), RATE, STEP, SteadyCriterion())
        assert out["steady"], out
        assert out["backlog_at_last_send"] <= out["backlog_allowed"]


def test_growing_backlog_fails_on_its_trend() -> None:
    # Each request waits 0.1 s more per second of sends (a queue that never drains).
    out = steady_state(_results(lambda t: 5.0 + 0.1 * t, 300), RATE, STEP, SteadyCriterion())
    assert not out["ttft_trend_ok"] and not out["steady"]
    # A backlog that jumps at the end (a stall) fails on the backlog.
    out = steady_state(_results(lambda t: 5.0 if t < 140 else 60.0, 300), RATE, STEP,
                       SteadyCriterion())  # fmt: skip
    assert not out["backlog_ok"] and not out["steady"]


def test_a_refused_request_fails_the_point() -> None:
    out = steady_state(
        _results(lambda t: 5.0, 120, lambda i: 429 if i == 50 else 200), RATE, STEP,
        SteadyCriterion(),
    )  # fmt: skip
    assert out["ttft_trend_ok"] and out["failed"] == 1 and not out["steady"]
