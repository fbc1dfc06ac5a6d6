"""`prfaas sim --case FILE`: a planner case simulated at its own size and bytes."""

from __future__ import annotations

import json

from prfaas.cli import main
from prfaas.data import case_study_file
from prfaas.planner import load_case, plan


def test_case_file_runs_the_planned_deployment_at_its_own_bytes(tmp_path) -> None:  # noqa: ANN001
    rc = main(["sim", "--case", str(case_study_file()), "--duration", "120", "--no-progress",
               "--out-dir", str(tmp_path)])  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "sim.json").read_text())
    planned = plan(load_case(case_study_file())).plans["prfaas_pd"].point
    assert doc["instances"] == 12 and doc["planner_lambda_max_rps"] == planned.lambda_max
    assert doc["offered_rps"] == 0.9 * planned.lambda_max
    assert 0.2 < doc["point"]["offload_fraction"] < 0.8
    # Real bytes on the case's 100 Gbps line: egress of the order of Gbps, never above the line.
    eg = doc["egress_windows_bytes_per_s"]
    assert 1e8 < eg["mean"] <= eg["p99"] <= 100e9 / 8 * (1 + 1e-9)
