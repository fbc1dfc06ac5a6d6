"""`prfaas bench router` runs end to end on instant workers (its figures go to BENCHMARKS.md;
no timing is asserted here)."""

from __future__ import annotations

import pytest

from prfaas.tools.benchmarks.router_overhead import measure


async def test_router_overhead_measures_both_paths() -> None:
    result = await measure(num_requests=6, prompt_tokens=64)
    assert result["requests"] == 6
    assert result["direct_p50_ms"] > 0 and result["routed_p50_ms"] > 0
    assert result["route_stage_mean_ms"] > 0
    ratio = result["routed_p50_ms"] / result["direct_p50_ms"]
    assert result["routed_over_direct_p50"] == pytest.approx(ratio)
