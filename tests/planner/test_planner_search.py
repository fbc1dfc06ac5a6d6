"""Grid search on a synthetic case with a unique optimum worked out by hand, and the case study."""

from __future__ import annotations

import numpy as np
import pytest

from prfaas.data import case_study_file
from prfaas.planner.case import load_case, plan
from prfaas.planner.profiles import DecodeProfile, PrefillProfile
from prfaas.planner.search import ClusterModel, evaluate, optimal_threshold, search
from prfaas.planner.workload import EmpiricalLengths

CASE = case_study_file()


def _model(profile: PrefillProfile, decode: DecodeProfile) -> ClusterModel:
    return ClusterModel(
        pd_profile=profile, decode=decode, output_tokens=10, n_pd=3, n_prfaas=1,
        prfaas_profile=profile, link_bytes_per_s=1e12,
    )  # fmt: skip


def test_search_finds_hand_computed_optimum(linear_profile, fast_decode) -> None:
    # Lengths 1K..4K, T(l) = l/1000, one PrfaaS instance, 3 PD instances. By hand:
    #   t in [3000, 4000): p = 1/4, Θ_prfaas/p = (1/4)/(1/4) = 1, Θ_pd-p/(1-p) = (N_p/2)/(3/4);
    #   N_p = 2 gives min(1, 4/3) = 1; every other (t, N_p) gives at most 0.8.
    lengths = EmpiricalLengths.from_samples([1000, 2000, 3000, 4000])
    best, grid = search(_model(linear_profile, fast_decode), lengths, np.arange(0, 4200, 100))
    assert 3000 <= best.threshold < 4000
    assert (best.n_p, best.n_d) == (2, 1)
    assert best.lambda_max == pytest.approx(1.0)
    assert best.p == pytest.approx(0.25)
    assert grid.lambda_max.max() == pytest.approx(1.0)
    assert np.sum(np.isclose(grid.lambda_max, 1.0)) == 10  # t = 3000..3900 at N_p = 2 only


def test_link_squeeze_raises_optimal_threshold(linear_profile, fast_decode) -> None:
    """A tighter B_out pushes the best t up (fewer, longer offloads), as §3.4.2 argues."""
    lengths = EmpiricalLengths.from_samples(np.linspace(1000, 4000, 301))
    wide = _model(linear_profile, fast_decode)
    narrow = ClusterModel(**{**wide.__dict__, "link_bytes_per_s": 2e5})
    t_wide = optimal_threshold(wide, lengths, n_p=2).threshold
    t_narrow = optimal_threshold(narrow, lengths, n_p=2).threshold
    assert t_narrow > t_wide


def test_case_study_optimum_is_a_local_maximum() -> None:
    case = load_case(CASE)
    res = plan(case)
    best = res.plans["prfaas_pd"].point
    model = case.cluster_model(case.deployments["prfaas_pd"])
    for dt, dn in [(-512, 0), (512, 0), (0, -1), (0, 1)]:
        n_p = best.n_p + dn
        if 0 <= n_p < model.n_pd:
            other = evaluate(model, case.lengths, best.threshold + dt, n_p)
            assert other.lambda_max <= best.lambda_max + 1e-12
    # Every request is offloaded at t = 0 with N_p = 0: that is the naive deployment, which the
    # prfaas search therefore can never do worse than.
    naive = res.plans["naive_heterogeneous"].point
    assert best.lambda_max >= naive.lambda_max
    assert best.egress_bytes_per_s <= model.link_bytes_per_s
