"""`prfaas sim --projections`: the §2.3 scenarios' egress, idle line share and cut cost."""

from __future__ import annotations

import pytest

from prfaas.tools.sim.projections import (
    MODELS,
    Scenario,
    case_gbps_512_h200,
    cut_cost,
    render,
    simulate,
)


def test_model_kv_rates_reproduce_the_quoted_all_offload_egress() -> None:
    base = case_gbps_512_h200()
    row, _ = simulate(Scenario(MODELS[2], 1, 60.0))  # MiniMax-M2.5, 4 H200 instances
    # 4 of the 64 instances that need 3.8 Tbps at 32K tokens.
    assert row["all_offload_gbps"] == pytest.approx(3800.0 * 4 / 64)
    assert row["byte_factor"] == pytest.approx(3800.0 / base)


def test_threshold_keeps_egress_under_the_line_and_the_table_renders() -> None:
    row, _ = simulate(Scenario(MODELS[0], 1, 300.0))
    assert 0 < row["egress_mean_gbps"] <= row["egress_p99_gbps"] <= row["line_gbps"] * (1 + 1e-9)
    assert row["idle_share"] == pytest.approx(1 - row["egress_mean_gbps"] / row["line_gbps"])
    cut = cut_cost(MODELS[2], 1, 30.0, 60.0)  # the model that fills the line
    assert cut["cut"]["arrived"] == cut["no_cut"]["arrived"] > 0
    text = render([row], [cut], "prfaas sim --projections", 300.0)
    assert "| case study (1T hybrid) | 96 (4) | 100 |" in text
    assert text.count("| MiniMax-M2.5 | 96 |") == 2
