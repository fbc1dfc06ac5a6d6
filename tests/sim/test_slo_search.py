"""`prfaas plan --simulate`: the simulated SLO rate of a deployment, and the coarse search."""

from __future__ import annotations

import json

from prfaas.cli import main
from prfaas.data import case_study_file
from prfaas.planner import load_case, plan
from prfaas.tools.sim.slo_search import Candidate, Slo, candidates, max_rate, meets, simulate_at


def test_the_slo_rate_meets_the_slo_and_queueing_keeps_it_below_the_bound() -> None:
    case = load_case(case_study_file())
    dp = plan(case).plans["prfaas_pd"]
    pt = dp.point
    c = Candidate(pt.threshold, pt.n_p, pt.n_d)
    slo = Slo()
    rate, m = max_rate(case, dp, c, slo, duration_s=200.0, seed=0, iterations=4)
    assert 0 < rate < 1.5 * pt.lambda_max and meets(m, slo) and m["rate_rps"] == rate
    # Well past the analytical bound the queues grow: the SLO is missed.
    assert not meets(simulate_at(case, dp, c, 1.4 * pt.lambda_max, 200.0, 0), slo)


def test_the_search_moves_t_and_the_split_but_keeps_the_instance_count() -> None:
    case = load_case(case_study_file())
    plans = plan(case).plans
    prfaas = candidates(plans["prfaas_pd"])
    assert len({c.threshold for c in prfaas}) == 5 and len({c.n_p for c in prfaas}) >= 3
    assert all(c.n_p + c.n_d == plans["prfaas_pd"].deployment.n_pd for c in prfaas)
    assert len({c.threshold for c in candidates(plans["homogeneous_pd"])}) == 1
    assert len(candidates(plans["naive_heterogeneous"])) == 1


def test_plan_simulate_writes_a_rate_per_deployment(tmp_path, capsys) -> None:  # noqa: ANN001
    rc = main(["plan", "--simulate", "--no-search", "--sim-duration", "120",
               "--sim-iterations", "3", "--out-dir", str(tmp_path)])  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "plan_simulated.json").read_text())
    assert set(doc) == {"prfaas_pd", "homogeneous_pd", "naive_heterogeneous"}
    assert doc["prfaas_pd"]["planned"]["slo_rate_rps"] > 0
    assert "SLO rate in simulation" in capsys.readouterr().out
