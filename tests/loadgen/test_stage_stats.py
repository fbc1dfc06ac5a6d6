"""Stage means and P90s from two scrapes of the router's stage histogram."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from prfaas.metrics.stages import StageMetrics
from prfaas.tools.loadgen.stage_stats import format_stage_table, stage_histograms, stage_summary


def test_only_the_runs_observations_count_and_p90_interpolates() -> None:
    registry = CollectorRegistry()
    stages = StageMetrics(registry)
    stages.observe("ttft", 100.0)  # before the run: must not count
    before = stage_histograms(generate_latest(registry).decode())
    for seconds in [0.3] * 9 + [4.0]:
        stages.observe("ttft", seconds)
    stages.observe("route", 0.0003)
    after = stage_histograms(generate_latest(registry).decode())
    summary = stage_summary(after, before)
    assert list(summary) == ["route", "ttft"]  # pipeline order, unobserved stages left out
    ttft = summary["ttft"]
    assert ttft["count"] == 10
    assert ttft["mean_s"] == pytest.approx((9 * 0.3 + 4.0) / 10)
    # The 9th of 10 observations lies in the (0.2, 0.35] bucket, which holds 9 of them.
    assert 0.2 < ttft["p90_s"] <= 0.35
    assert summary["route"]["p90_s"] <= 0.0005
    table = format_stage_table(summary)
    assert "ttft" in table and "route" in table
