"""`prfaas experiment --quick` end to end: real processes (1 PrfaaS + 2 PD emulated workers per
policy), a handful of requests per policy, the fluctuation run where namespaces are available;
checks the outputs' structure, not the numbers (the full run is a benchmark, BENCHMARKS.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from prfaas.tools.experiment import add_arguments, run
from prfaas.tools.experiment.scale import Scale, predict


def test_prediction_matches_the_case_study_at_time_factor_one() -> None:
    _, pred = predict(Scale())
    lam = {k: v["lambda_max_rps"] for k, v in pred["policies"].items()}
    # ÷100 bytes on a 1 Gbit/s link and 32 × 800 ms decode are the paper's inputs, rescaled.
    assert abs(lam["prfaas"] - 3.297) < 0.01 and abs(lam["homogeneous-pd"] - 2.106) < 0.01
    assert pred["policies"]["prfaas"]["n_prefill"] == 3
    assert pred["policies"]["prfaas"]["n_decode"] == 5
    assert abs(pred["ratios"]["prfaas/naive-hetero"] - 1.31) < 0.01


def test_quick_experiment_writes_results(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--quick", "--out-dir", str(tmp_path), "--duration", "4"])
    assert run(args) == 0
    doc = json.loads((tmp_path / "experiment.json").read_text())
    assert set(doc["points"]) == {"prfaas", "homogeneous-pd", "naive-hetero"}
    for policy, points in doc["points"].items():
        assert points and all(p["failed"] == 0 for p in points), policy
        assert {"throughput_rps", "completion_ratio", "sustainable", "checks"} <= set(points[0])
        assert policy in doc["measured"] and policy in doc["prediction"]["policies"]
    assert set(doc["ratios"]) == {"prfaas/homogeneous-pd", "prfaas/naive-hetero"}
    assert doc["points"]["naive-hetero"][0]["offload_fraction"] == 1.0
    assert doc["points"]["homogeneous-pd"][0]["offload_fraction"] == 0.0
    assert (tmp_path / "experiment.md").read_text().startswith("| policy |")
    assert (tmp_path / "throughput.png").stat().st_size > 0
    if doc["network"] == "netns":
        fl = doc["fluctuation"]
        assert fl["failed"] == 0 and [e["event"] for e in fl["events"]] == ["cut", "restore"]
        assert fl["samples"] and (tmp_path / "fluctuation.png").stat().st_size > 0
        assert {"utilization", "prfaas_waiting_mean", "retransmits"} <= set(fl["samples"][-1])
